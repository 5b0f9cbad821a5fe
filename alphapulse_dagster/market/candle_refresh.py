"""Refresh the candles of a time window: fetch only the finest timeframe each symbol needs,
derive the coarser ones by UTC-aligned resampling, upsert them all.

Bars are stored only once closed (close time ≤ the window end, which a live run caps at
"now"), and the fetch starts at the coarsest bar boundary before the window so a partially
covered coarse bar is built from all of its fine bars. A window re-run writes the same rows
(idempotent). The figures are kept per UTC day of the bars' open time, so a run over many
days reports each day's own numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.market.candle_store import upsert_candles
from alphapulse_dagster.market.market_data import MarketDataSource, missing_bars_by_window
from alphapulse_dagster.market.resample import closed_bars, resample_ohlcv
from alphapulse_dagster.market.timeframes import duration, seconds

DAY = pd.Timedelta(days=1)


@dataclass
class RefreshStats:
    """Counts of one window, or of one UTC day of it (bars by open time)."""

    rows_written: int = 0
    fine_bars: int = 0
    symbols: int = 0
    missing_bars: int = 0
    rows_by_timeframe: dict[str, int] = field(default_factory=dict)
    missing_by_symbol: dict[str, int] = field(default_factory=dict)


@dataclass
class WindowRefresh:
    """A refreshed window: its totals and each UTC day's own figures (``YYYY-MM-DD``)."""

    total: RefreshStats
    by_day: dict[str, RefreshStats]


def utc_days(start: datetime, end: datetime) -> list[pd.Timestamp]:
    """00:00 UTC of every day that ``[start, end)`` touches, in order."""
    first = pd.Timestamp(start).tz_convert("UTC").floor("D")
    last = (pd.Timestamp(end).tz_convert("UTC") - pd.Timedelta(1, "us")).floor("D")
    return list(pd.date_range(first, last, freq="D")) if last >= first else []


def timeframes_needed(config: AppConfig) -> dict[str, list[str]]:
    """symbol → every timeframe its MTF run needs (signal, entry, higher), finest first."""
    needed: dict[str, list[str]] = {}
    for symbol in config.symbols.enabled():
        signal_tf = config.signal_timeframe(symbol)
        tfs = {signal_tf, config.entry_timeframe(symbol), *config.higher_timeframes(signal_tf)}
        needed[symbol.symbol] = sorted(tfs, key=seconds)
    return needed


def fetch_window(
    source_for: Callable[[str], MarketDataSource],
    config: AppConfig,
    start: datetime,
    end: datetime,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Fine bars for every enabled symbol, from the coarsest boundary before ``start``,
    closed by ``end`` (a bar still forming at ``end`` is left for the next run).
    ``source_for(exchange)`` gives the source of a symbol's ``exchange`` in
    ``symbol_config.yaml`` (``csv``, ``database`` or a ccxt exchange id)."""
    needed = timeframes_needed(config)
    exchanges = {s.symbol: s.exchange for s in config.symbols.enabled()}
    frames = []
    for symbol, tfs in needed.items():
        fetch_start = pd.Timestamp(start).floor(f"{seconds(tfs[-1])}s").to_pydatetime()
        source = source_for(exchanges[symbol])
        bars = source.fetch_ohlcv(symbol, tfs[0], fetch_start, end)
        frames.append(closed_bars(bars, tfs[0], pd.Timestamp(end)))
    fine = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return fine, needed


def _add(stats: RefreshStats, tf: str, written: int) -> None:
    stats.rows_written += written
    stats.rows_by_timeframe[tf] = stats.rows_by_timeframe.get(tf, 0) + written


def derive_and_store(
    engine: Engine,
    fine: pd.DataFrame,
    needed: dict[str, list[str]],
    start: datetime,
    end: datetime,
) -> WindowRefresh:
    """Resample ``fine`` to every needed timeframe and upsert, all in one transaction.
    Rows are counted on the UTC day of their open time; missing fine bars on the day they
    should have opened."""
    days = utc_days(start, end)
    total = RefreshStats(symbols=len(needed), fine_bars=len(fine))
    by_day = {d.strftime("%Y-%m-%d"): RefreshStats(symbols=len(needed)) for d in days}
    fine_days = fine["open_time"].dt.floor("D") if len(fine) else pd.Series(dtype=object)
    for day in days:
        by_day[day.strftime("%Y-%m-%d")].fine_bars = int((fine_days == day).sum())
    window_end = pd.Timestamp(end)
    with engine.begin() as connection:
        for symbol, tfs in needed.items():
            bars = fine[fine["symbol"] == symbol]
            finest = tfs[0]
            gaps = missing_bars_by_window(
                bars,
                finest,
                [max(day, pd.Timestamp(start)) for day in days],
                [min(day + DAY, window_end) for day in days],
            )
            for day, gap in zip(days, gaps, strict=True):
                day_stats = by_day[day.strftime("%Y-%m-%d")]
                day_stats.missing_by_symbol[symbol] = gap
                day_stats.missing_bars += gap
                total.missing_by_symbol[symbol] = total.missing_by_symbol.get(symbol, 0) + gap
                total.missing_bars += gap
            for tf in tfs:
                if tf == finest:
                    derived = bars[bars["open_time"] >= pd.Timestamp(start)]
                else:
                    derived = closed_bars(resample_ohlcv(bars, tf), tf, window_end)
                    # keep coarse bars that close inside the window
                    derived = derived[derived["open_time"] + duration(tf) > pd.Timestamp(start)]
                _add(total, tf, upsert_candles(connection, derived, tf))
                # a coarse bar opened before the window (closing inside it) counts on day one
                opened = derived["open_time"].dt.floor("D").clip(lower=days[0]) if days else None
                for day, written in opened.value_counts().items() if opened is not None else []:
                    _add(by_day[pd.Timestamp(day).strftime("%Y-%m-%d")], tf, int(written))
    return WindowRefresh(total, by_day)
