"""Market data sources behind one interface: ``fetch_ohlcv(symbol, timeframe, start, end)``.

- :class:`CsvMarketData` — a folder of ``{SYMBOL}_{timeframe}.csv`` files (the bundled
  sample, ``ALPHAPULSE_MARKET_DATA_DIR``).
- :class:`DatabaseMarketData` — the ``candles`` table itself.
- :class:`ExchangeMarketData` — any exchange through ``ccxt`` (optional extra
  ``alphapulse-dagster[exchange]``; never called by the tests).

Every source returns the long frame ``symbol, open_time, open, high, low, close, volume``
with ``open_time`` the bar OPEN time (UTC) in ``[start, end)``, ascending. A source that
only has a finer timeframe resamples (UTC-aligned); none forward-fills missing bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from alphapulse_dagster.db.tables import candles
from alphapulse_dagster.market.bar_series import to_ns
from alphapulse_dagster.market.resample import OHLCV, closed_bars, resample_ohlcv
from alphapulse_dagster.market.timeframes import TIMEFRAME_SECONDS, duration, seconds

COLUMNS = ["symbol", "open_time", *OHLCV]


class MarketDataError(RuntimeError):
    """The source cannot provide the requested bars."""


class MarketDataSource(Protocol):
    def fetch_ohlcv(
        self, symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame: ...


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    frame["symbol"] = frame["symbol"].astype("object")
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    return frame


def read_candle_csv(path: str | Path, symbol: str) -> pd.DataFrame:
    """Read one CSV of SPEC §16 format into the long frame (no cleaning, no filling)."""
    frame = pd.read_csv(path)
    missing = [c for c in ("open_time", *OHLCV) if c not in frame.columns]
    if missing:
        raise MarketDataError(f"{path}: missing column(s) {missing}")
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    for column in OHLCV:
        frame[column] = frame[column].astype("float64")
    frame.insert(0, "symbol", symbol)
    return frame[COLUMNS].sort_values("open_time", kind="stable").reset_index(drop=True)


@lru_cache(maxsize=32)
def _cached_csv(path: str, mtime_ns: int, symbol: str) -> pd.DataFrame:
    return read_candle_csv(path, symbol)


def _window(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    times = frame["open_time"]
    return frame[(times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))].reset_index(
        drop=True
    )


class CsvMarketData:
    """A folder of ``{SYMBOL}_{timeframe}.csv`` files. A timeframe with no file of its own
    is derived from the finest finer file by resampling (only closed bars)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def available_timeframes(self, symbol: str) -> list[str]:
        found = [tf for tf in TIMEFRAME_SECONDS if (self.folder / f"{symbol}_{tf}.csv").exists()]
        return sorted(found, key=seconds)

    def _load(self, symbol: str, timeframe: str) -> pd.DataFrame:
        path = self.folder / f"{symbol}_{timeframe}.csv"
        return _cached_csv(str(path), path.stat().st_mtime_ns, symbol)

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        available = self.available_timeframes(symbol)
        if timeframe in available:
            return _window(self._load(symbol, timeframe), start, end)
        finer = [tf for tf in available if seconds(tf) < seconds(timeframe)]
        if not finer:
            raise MarketDataError(
                f"{self.folder}: no {symbol}_{timeframe}.csv and no finer file to derive it "
                f"from (have: {available or 'none'})"
            )
        base = finer[-1]
        bucket_start = pd.Timestamp(start).floor(f"{seconds(timeframe)}s")
        fine = _window(self._load(symbol, base), bucket_start.to_pydatetime(), end)
        coarse = resample_ohlcv(fine, timeframe)
        data_end = min(pd.Timestamp(end), fine["open_time"].max() + duration(base))
        coarse = closed_bars(coarse, timeframe, data_end) if len(fine) else coarse
        return _window(coarse[COLUMNS], start, end)


class DatabaseMarketData:
    """The ``candles`` table as a source (what earlier runs stored)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        query = (
            select(
                candles.c.symbol,
                candles.c.open_time,
                *(candles.c[c] for c in OHLCV),
            )
            .where(
                candles.c.symbol == symbol,
                candles.c.timeframe == timeframe,
                candles.c.open_time >= start,
                candles.c.open_time < end,
            )
            .order_by(candles.c.open_time)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return _empty()
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
        return frame


class ExchangeMarketData:
    """An exchange through ccxt (``pip install 'alphapulse-dagster[exchange]'``).

    Pages through ``fetch_ohlcv`` with the exchange's own limit; drops the bar still
    forming. Network code: documented, never exercised by the test-suite.
    """

    def __init__(self, exchange_id: str, page_limit: int = 1000) -> None:
        try:
            import ccxt  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - optional extra
            raise MarketDataError(
                "the exchange source needs ccxt: pip install 'alphapulse-dagster[exchange]'"
            ) from exc
        self.exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True})
        self.page_limit = page_limit

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:  # pragma: no cover - network
        step_ms = seconds(timeframe) * 1000
        since = int(pd.Timestamp(start).timestamp() * 1000)
        end_ms = int(pd.Timestamp(end).timestamp() * 1000)
        rows: list[list[float]] = []
        while since < end_ms:
            page = self.exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=self.page_limit)
            if not page:
                break
            rows.extend(r for r in page if r[0] < end_ms)
            since = int(page[-1][0]) + step_ms
        if not rows:
            return _empty()
        frame = pd.DataFrame(rows, columns=["open_time", *OHLCV])
        frame["open_time"] = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
        frame.insert(0, "symbol", symbol)
        now = pd.Timestamp.now(tz="UTC")
        frame = frame[frame["open_time"] + duration(timeframe) <= now]
        return frame.drop_duplicates("open_time").reset_index(drop=True)


def missing_bars(bars: pd.DataFrame, timeframe: str, start: datetime, end: datetime) -> int:
    """Bars absent from ``bars`` (one symbol, one timeframe) between its first bar and the
    end of the window — outages and weekends. Counted, never filled."""
    return missing_bars_by_window(bars, timeframe, [start], [end])[0]


def missing_bars_by_window(
    bars: pd.DataFrame, timeframe: str, starts: Sequence[datetime], ends: Sequence[datetime]
) -> list[int]:
    """:func:`missing_bars` of many windows ``[starts[i], ends[i])`` at once (e.g. each day
    of a year): one vectorised pass over the bars, not one per window."""
    if bars.empty:
        return [0] * len(starts)
    step = int(pd.Timedelta(duration(timeframe)).value)
    times = np.sort(to_ns(bars["open_time"]))
    first = np.maximum(to_ns(list(starts)), times[0])
    last = np.minimum(to_ns(list(ends)) - step, times[-1])
    expected = (last - first) // step + 1
    present = np.searchsorted(times, last, "right") - np.searchsorted(times, first, "left")
    missing = np.where(last < first, 0, np.maximum(expected - present, 0))
    return [int(m) for m in missing]
