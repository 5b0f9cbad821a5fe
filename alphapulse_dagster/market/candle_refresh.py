"""Refresh the candles of a time window: fetch only the finest timeframe each symbol needs,
derive the coarser ones by UTC-aligned resampling, upsert them all.

Coarse bars are stored only once closed (close time ≤ the window end), and the fetch starts
at the coarsest bar boundary before the window so a partially covered coarse bar is built
from all of its fine bars. A window re-run writes the same rows (idempotent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.market.candle_store import upsert_candles
from alphapulse_dagster.market.market_data import MarketDataSource, missing_bars
from alphapulse_dagster.market.resample import closed_bars, resample_ohlcv
from alphapulse_dagster.market.timeframes import duration, seconds


@dataclass
class RefreshStats:
    rows_written: int = 0
    fine_bars: int = 0
    symbols: int = 0
    missing_bars: int = 0
    rows_by_timeframe: dict[str, int] = field(default_factory=dict)
    missing_by_symbol: dict[str, int] = field(default_factory=dict)


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
    """Fine bars for every enabled symbol, from the coarsest boundary before ``start``.
    ``source_for(exchange)`` gives the source of a symbol's ``exchange`` in
    ``symbol_config.yaml`` (``csv``, ``database`` or a ccxt exchange id)."""
    needed = timeframes_needed(config)
    exchanges = {s.symbol: s.exchange for s in config.symbols.enabled()}
    frames = []
    for symbol, tfs in needed.items():
        fetch_start = pd.Timestamp(start).floor(f"{seconds(tfs[-1])}s").to_pydatetime()
        source = source_for(exchanges[symbol])
        frames.append(source.fetch_ohlcv(symbol, tfs[0], fetch_start, end))
    fine = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return fine, needed


def derive_and_store(
    engine: Engine,
    fine: pd.DataFrame,
    needed: dict[str, list[str]],
    start: datetime,
    end: datetime,
) -> RefreshStats:
    """Resample ``fine`` to every needed timeframe and upsert, all in one transaction."""
    stats = RefreshStats(symbols=len(needed), fine_bars=len(fine))
    window_end = pd.Timestamp(end)
    with engine.begin() as connection:
        for symbol, tfs in needed.items():
            bars = fine[fine["symbol"] == symbol]
            finest = tfs[0]
            gap = missing_bars(bars, finest, start, end)
            stats.missing_by_symbol[symbol] = gap
            stats.missing_bars += gap
            for tf in tfs:
                if tf == finest:
                    derived = bars[bars["open_time"] >= pd.Timestamp(start)]
                else:
                    derived = closed_bars(resample_ohlcv(bars, tf), tf, window_end)
                    # keep coarse bars that close inside the window
                    derived = derived[derived["open_time"] + duration(tf) > pd.Timestamp(start)]
                written = upsert_candles(connection, derived, tf)
                stats.rows_written += written
                stats.rows_by_timeframe[tf] = stats.rows_by_timeframe.get(tf, 0) + written
    return stats
