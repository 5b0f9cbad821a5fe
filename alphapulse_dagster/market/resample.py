"""Timeframes and UTC-aligned OHLCV resampling.

A bar is labelled by its OPEN time (UTC); its close time is ``open_time + timeframe``.
Coarse bars are aligned to the UTC epoch (``4h`` bars open at 00, 04, 08 ... UTC, ``1d`` bars
at 00:00 UTC, ``1w`` bars on Monday 00:00 UTC). Missing fine bars are never invented or
forward-filled: a coarse bar exists only if at least one fine bar falls in it, and it says
how many did (``n_bars``) so callers can drop incomplete ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphapulse_dagster.market.timeframes import duration

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
OHLCV = list(OHLCV_COLUMNS)
# 1970-01-01 was a Thursday; weekly bars are anchored on the first Monday.
_WEEK_ORIGIN_NS = pd.Timestamp("1970-01-05", tz="UTC").value


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """``'15m'``, ``'1h'``, ``'4h'``, ``'1d'``, ``'1w'`` -> the bar length (a ValueError
    names an unknown timeframe)."""
    return pd.Timedelta(duration(timeframe.strip()))


def _origin_ns(timeframe: str) -> int:
    return _WEEK_ORIGIN_NS if timeframe.strip().endswith("w") else 0


def to_utc(values: pd.Series) -> pd.Series:
    """Parse timestamps (ISO strings or datetimes) as ``datetime64[ns, UTC]``."""
    return pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("ns")


def resample_ohlcv(
    df: pd.DataFrame, timeframe: str, *, source_timeframe: str | None = None
) -> pd.DataFrame:
    """Aggregate OHLCV bars into ``timeframe`` bars aligned to UTC.

    ``df`` has ``open_time`` (bar open, UTC) and OHLCV columns, optionally ``symbol``
    (then each symbol is resampled on its own). open = first, high = max, low = min,
    close = last, volume = sum. Returns the same columns (``open_time`` labelled by the
    coarse bar's OPEN time) plus ``n_bars``, the number of fine bars aggregated, and, when
    ``source_timeframe`` is given, ``expected_bars`` and ``complete``. A coarse bar whose
    close time is in the future of the data is *unclosed*: it is returned (with
    ``complete = False`` if bars are missing) and it is the caller's job to use a bar only
    from its close time on.
    """
    tf_ns = timeframe_to_timedelta(timeframe).value
    has_symbol = "symbol" in df.columns
    open_ns = to_utc(df["open_time"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    origin = _origin_ns(timeframe)
    bucket = (open_ns - origin) // tf_ns * tf_ns + origin
    work = pd.DataFrame(
        {
            "_bucket": bucket,
            "_fine": open_ns,
            **{c: df[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS},
        }
    )
    keys = ["_bucket"]
    if has_symbol:
        work.insert(0, "symbol", df["symbol"].to_numpy())
        keys = ["symbol", "_bucket"]
    work = work.sort_values([*keys[:-1], "_fine"], kind="stable")
    grouped = work.groupby(keys, sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        n_bars=("open", "size"),
    ).reset_index()
    out.insert(len(keys) - 1, "open_time", pd.to_datetime(out.pop("_bucket"), utc=True))
    out["open_time"] = out["open_time"].dt.as_unit("ns")
    out["n_bars"] = out["n_bars"].astype(np.int64)
    if source_timeframe is not None:
        src_ns = timeframe_to_timedelta(source_timeframe).value
        if tf_ns % src_ns:
            raise ValueError(f"{timeframe} is not a multiple of {source_timeframe}")
        out["expected_bars"] = tf_ns // src_ns
        out["complete"] = out["n_bars"] == out["expected_bars"]
    return out


def closed_bars(bars: pd.DataFrame, timeframe: str, data_end: pd.Timestamp) -> pd.DataFrame:
    """Keep the bars whose close time (open + timeframe) is at or before ``data_end``: a bar
    still forming is never published (no look-ahead, no partial bars in storage)."""
    return bars[bars["open_time"] + timeframe_to_timedelta(timeframe) <= data_end]
