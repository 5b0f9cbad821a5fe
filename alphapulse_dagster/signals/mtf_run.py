"""One MTF window end to end, outside any orchestrator: load the finest bars each symbol
needs from the ``candles`` table, derive the coarser timeframes in memory, generate and
refine the signals whose signal bar closes in ``[start, end)``.

The same function serves the Dagster assets, the benchmark and ``make demo``.

Deterministic warm-up: the indicators (EMAs, Wilder averages) depend, however faintly, on
where their history starts. So the history of a signal bar closing at t does not start
"so many bars before the window" (which would differ between an hourly live run and a
backfill over months) but at a fixed boundary: the latest multiple of the warm-up block
(the plan's lookback rounded up to whole days, counted from the Unix epoch) at or before
t − block. A live run and a backfill therefore compute every signal from the same bars,
bit for bit; a window that spans several blocks is generated block by block.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.market.candle_store import load_candles
from alphapulse_dagster.market.resample import resample_ohlcv
from alphapulse_dagster.market.timeframes import duration, seconds
from alphapulse_dagster.signals.model_heads import ConsensusRule
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.signal_generation import generate_signals
from alphapulse_dagster.signals.signal_store import Lifecycle, record_signals
from alphapulse_dagster.signals.trade_management import TradeRule
from alphapulse_dagster.signals.window_plan import WindowRecord

__all__ = ["WindowRecord", "generate_window", "record_window", "trade_rule"]

# history loaded before the window so indicators are warm (EMA50 on the entry timeframe,
# EMA21 + slope on the higher timeframes, heads on the signal timeframe)
SIGNAL_LOOKBACK_BARS = 300
ENTRY_LOOKBACK_BARS = 500
HTF_LOOKBACK_BARS = 100

RAW_SIGNAL_COLUMNS = [
    "signal_id",
    "symbol",
    "direction",
    "signal_timeframe",
    "timestamp",
    "signal_confidence",
    "model_heads_analysis",
    "market_price",
    "htf_alignment",
    "htf_agreement",
]


@dataclass(frozen=True)
class TimeframePlan:
    signal: str
    entry: str
    higher: tuple[str, ...]

    @property
    def all(self) -> list[str]:
        return sorted({self.signal, self.entry, *self.higher}, key=seconds)

    def lookback(self) -> timedelta:
        return max(
            SIGNAL_LOOKBACK_BARS * duration(self.signal),
            ENTRY_LOOKBACK_BARS * duration(self.entry),
            *(HTF_LOOKBACK_BARS * duration(tf) for tf in self.higher),
        )

    def warmup_block(self) -> timedelta:
        """The lookback rounded up to whole days: the spacing of the warm-up anchors."""
        return timedelta(days=-(-self.lookback() // timedelta(days=1)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def warmup_anchor(signal_time: datetime, block: timedelta) -> datetime:
    """Where the history of a signal bar closing at ``signal_time`` starts: the latest
    multiple of ``block`` (since the Unix epoch, UTC) at or before ``signal_time − block``,
    so it always has between one and two blocks of history."""
    return _EPOCH + ((signal_time - block - _EPOCH) // block) * block


def warmup_blocks(
    start: datetime, end: datetime, block: timedelta
) -> list[tuple[datetime, datetime, datetime]]:
    """``(anchor, from, to)``: ``[start, end)`` cut where the anchor of its signal times
    changes."""
    pieces = []
    at = start
    while at < end:
        anchor = warmup_anchor(at, block)
        to = min(end, anchor + 2 * block)  # the first signal time of the next anchor
        pieces.append((anchor, at, to))
        at = to
    return pieces


def consensus_rule(config: AppConfig) -> ConsensusRule:
    signal = config.mtf.signal
    return ConsensusRule(
        min_agreeing_heads=signal.min_agreeing_heads,
        min_mean_confidence=signal.min_mean_confidence,
        heads=tuple(signal.heads),
        fire_on=signal.fire_on,
    )


def trade_rule(config: AppConfig) -> TradeRule:
    """The one trade-management rule's settings (fill window, time exit)."""
    return TradeRule(
        entry_valid_bars=config.mtf.entry.entry_valid_bars,
        max_holding_bars=config.mtf.risk.max_holding_bars,
    )


def timeframe_plans(config: AppConfig) -> dict[TimeframePlan, list[str]]:
    """Enabled symbols grouped by their (signal, entry, higher) timeframes."""
    plans: dict[TimeframePlan, list[str]] = defaultdict(list)
    for symbol in config.symbols.enabled():
        signal_tf = config.signal_timeframe(symbol)
        plan = TimeframePlan(
            signal_tf, config.entry_timeframe(symbol), config.higher_timeframes(signal_tf)
        )
        plans[plan].append(symbol.symbol)
    return dict(plans)


def candles_by_timeframe(fine: pd.DataFrame, finest: str, wanted: Sequence[str]) -> dict:
    """The finest bars plus every coarser timeframe resampled from them (UTC-aligned)."""
    frames = {finest: fine}
    for tf in wanted:
        if tf != finest:
            frames[tf] = resample_ohlcv(fine, tf).drop(columns="n_bars")
    return frames


def generate_window(
    engine: Engine, config: AppConfig, start: datetime, end: datetime
) -> pd.DataFrame:
    """Refined signals (one row each) whose signal bar closes in ``[start, end)``, each
    computed from the history that starts at its warm-up anchor (module docstring)."""
    results = []
    for plan, symbols in timeframe_plans(config).items():
        finest = plan.all[0]
        pieces = warmup_blocks(start, end, plan.warmup_block())
        if not pieces:
            continue
        with engine.connect() as connection:  # once: the pieces' histories overlap
            history = load_candles(connection, symbols, finest, pieces[0][0], end)
        opened = history["open_time"]
        for anchor, piece_start, piece_end in pieces:
            fine = history[(opened >= anchor) & (opened < piece_end)].reset_index(drop=True)
            if fine.empty:
                continue
            frames = candles_by_timeframe(fine, finest, plan.all)
            results.append(
                generate_signals(
                    frames,
                    signal_timeframe=plan.signal,
                    entry_timeframe=plan.entry,
                    start=piece_start,
                    end=piece_end,
                    htf_timeframes=plan.higher,
                    consensus_rule=consensus_rule(config),
                    refinement=config.mtf,
                    symbols=sorted(symbols),
                )
            )
    if not results:
        return pd.DataFrame()
    frame = (
        pd.concat([r for r in results if len(r)], ignore_index=True)
        if any(len(r) for r in results)
        else results[0]
    )
    return frame.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)


def record_window(
    engine: Engine,
    cache: SignalCache,
    signals: pd.DataFrame,
    window_end: datetime,
    rule: TradeRule,
    now: datetime,
) -> WindowRecord:
    """Store a window's signals in signal-time order, advancing the lifecycle of earlier
    signals to each signal time first (a filled, closed or expired signal frees its
    symbol+direction for the next one), then to the window end. A backfill over a range is
    therefore the same history the live schedule would have written, hour by hour; it is
    decided in memory and written in one transaction (:func:`signal_store.record_signals`)."""
    records: list[dict[str, Any]] = signals.to_dict("records") if len(signals) else []  # type: ignore[assignment]
    return record_signals(
        engine,
        cache,
        records,
        now,
        lambda timeframe: rule.entry_valid_bars * duration(timeframe),
        Lifecycle(rule, window_end),
    )
