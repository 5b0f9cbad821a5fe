"""UTC-aligned OHLCV resampling: derive coarser bars from the finest fetched timeframe.

Bars are labelled by their OPEN time. A coarse bar is emitted when at least one fine bar
falls into it; ``bar_count`` says how many did, so callers can see incomplete bars
(outages, weekends). Missing bars are never forward-filled.
"""

from __future__ import annotations

import pandas as pd

from alphapulse_dagster.timeframes import duration, pandas_rule

OHLCV = ["open", "high", "low", "close", "volume"]


def resample_ohlcv(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Resample a long frame (``symbol, open_time, open, high, low, close, volume``; open
    times UTC) to ``timeframe``: open=first, high=max, low=min, close=last, volume=sum.

    Returns the same columns plus ``bar_count`` (fine bars per coarse bar), sorted by
    symbol and open_time.
    """
    if bars.empty:
        empty = bars.reindex(columns=["symbol", "open_time", *OHLCV]).copy()
        empty["bar_count"] = pd.Series(dtype="int64")
        return empty
    times = bars["open_time"]
    if timeframe == "1w":  # weeks open on Monday 00:00 UTC
        bucket = times.dt.floor("D") - pd.to_timedelta(times.dt.weekday, unit="D")
    else:  # fixed-length rules floor to UTC epoch boundaries
        bucket = times.dt.floor(pandas_rule(timeframe))
    grouped = bars.assign(open_time=bucket).groupby(["symbol", "open_time"], sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        bar_count=("close", "count"),
    )
    out = out[out["bar_count"] > 0].reset_index()
    return out[["symbol", "open_time", *OHLCV, "bar_count"]]


def closed_bars(bars: pd.DataFrame, timeframe: str, data_end: pd.Timestamp) -> pd.DataFrame:
    """Keep the bars whose close time (open + timeframe) is at or before ``data_end``: a bar
    still forming is never published (no look-ahead, no partial bars in storage)."""
    return bars[bars["open_time"] + duration(timeframe) <= data_end]
