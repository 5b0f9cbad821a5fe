"""MTF signal generation: heads -> consensus -> HTF alignment -> entry refinement.

Time conventions: every input bar is labelled by its OPEN time (UTC); its close time is
``open_time + timeframe``. A signal's ``timestamp`` is its signal bar's CLOSE time, and it
uses only bars closed at or before it: signal-timeframe bars up to the signal bar,
entry-timeframe bars with close <= timestamp, higher-timeframe bars with close <= timestamp.
So truncating the data after t never changes a signal at or before t.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_dagster.config import MtfStrategies
from alphapulse_dagster.market.bars import last_closed_bar, panel_from_frame
from alphapulse_dagster.market.resample import timeframe_to_timedelta
from alphapulse_dagster.signals.entry_refinement import refine_entries
from alphapulse_dagster.signals.htf_alignment import HTFRule, adjust_confidence, align_signals
from alphapulse_dagster.signals.model_heads import (
    ConsensusRule,
    evaluate_heads,
    model_heads_analysis,
)

#: Namespace of the deterministic signal ids (uuid5 of symbol, timeframe, time, direction).
SIGNAL_ID_NAMESPACE = uuid.UUID("6f1c2b7e-3a52-5a0e-9a4c-1f7d2c9b8e31")

SIGNAL_COLUMNS = [
    "signal_id", "symbol", "direction", "signal_timeframe", "entry_timeframe", "timestamp",
    "signal_confidence", "consensus_confidence", "model_heads_analysis", "market_price",
    "htf_alignment", "htf_agreement", "entry_price", "stop_loss", "take_profits",
    "risk_reward_ratio", "targets_r", "entry_strategy", "entry_pattern", "entry_confidence",
    "atr", "entry_improvement_bps", "fallback_reason", "refinement_error", "entry_analysis",
    "status", "expires_at",
]  # fmt: skip


def _utc(ts: Any) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def signal_id(symbol: str, signal_timeframe: str, timestamp: pd.Timestamp, direction: str) -> str:
    """Deterministic UUID of a signal, so re-materialising a window yields the same ids."""
    key = f"{symbol}|{signal_timeframe}|{_utc(timestamp).isoformat()}|{direction}"
    return str(uuid.uuid5(SIGNAL_ID_NAMESPACE, key))


def generate_signals(
    candles_by_tf: Mapping[str, pd.DataFrame],
    *,
    signal_timeframe: str,
    entry_timeframe: str,
    start: Any,
    end: Any,
    htf_timeframes: Sequence[str] = (),
    consensus_rule: ConsensusRule | None = None,
    refinement: MtfStrategies | None = None,
    htf_rule: HTFRule | None = None,
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Signals whose signal bar CLOSES in ``[start, end)``, refined and HTF-aligned.

    ``candles_by_tf`` maps a timeframe (``'4h'``) to a long frame with columns symbol,
    open_time, open, high, low, close, volume (bars labelled by open time, UTC). It must
    hold ``signal_timeframe``, ``entry_timeframe`` and every ``htf_timeframes`` entry;
    coarser frames are typically resampled from the finest one by the caller. Include
    enough history before ``start`` for the indicators (e.g. 300 signal bars, 500 entry
    bars). Returns one row per signal (columns :data:`SIGNAL_COLUMNS`), sorted by
    timestamp then symbol. Deterministic: same input, same output (ids included).
    Rules default to ``ConsensusRule()``, ``MtfStrategies()`` (the refinement's entry and
    risk parameters) and ``HTFRule()``.
    """
    consensus_rule = consensus_rule or ConsensusRule()
    refinement = refinement or MtfStrategies()
    htf_rule = htf_rule or HTFRule()
    start_ns, end_ns = _utc(start).value, _utc(end).value
    if symbols is None:
        symbols = sorted(candles_by_tf[signal_timeframe]["symbol"].unique().tolist())
    symbols = list(symbols)
    sig = panel_from_frame(candles_by_tf[signal_timeframe], signal_timeframe, symbols)
    cons = evaluate_heads(sig.bars, consensus_rule)
    with np.errstate(invalid="ignore"):
        tradable = np.isfinite(sig.bars.close) & (sig.bars.close > 0)
    in_window = (sig.close_time >= start_ns) & (sig.close_time < end_ns)
    rows, bars = np.nonzero(cons.fired & in_window & tradable)
    times = sig.close_time[rows, bars]
    order = np.lexsort((rows, times))  # by time, then symbol row
    rows, bars, times = rows[order], bars[order], times[order]
    if len(rows) == 0:
        return _typed(pd.DataFrame(columns=SIGNAL_COLUMNS))

    directions = cons.direction[rows, bars].astype(np.int64)
    market = sig.bars.close[rows, bars]
    sym = [symbols[r] for r in rows]

    htf_panels = {tf: panel_from_frame(candles_by_tf[tf], tf, symbols) for tf in htf_timeframes}
    htf = align_signals(htf_panels, sym, times, directions, htf_rule)

    entry = panel_from_frame(candles_by_tf[entry_timeframe], entry_timeframe, symbols)
    entry_bar = last_closed_bar(entry, rows, times)  # entry bars closed <= signal time
    refined = refine_entries(entry.bars, rows, entry_bar, directions, market, sym, refinement)

    valid_for = timeframe_to_timedelta(entry_timeframe) * refinement.entry.entry_valid_bars
    records = []
    for i, r in enumerate(refined):
        ts = pd.Timestamp(int(times[i]), tz="UTC")
        side = r.direction
        base_conf = float(cons.confidence[rows[i], bars[i]])
        records.append({
            "signal_id": signal_id(sym[i], signal_timeframe, ts, side),
            "symbol": sym[i],
            "direction": side,
            "signal_timeframe": signal_timeframe,
            "entry_timeframe": entry_timeframe,
            "timestamp": ts,
            "signal_confidence": adjust_confidence(base_conf, htf.agreement[i], htf_rule),
            "consensus_confidence": base_conf,
            "model_heads_analysis": model_heads_analysis(cons, int(rows[i]), int(bars[i])),
            "market_price": float(market[i]),
            "htf_alignment": htf.alignment[i],
            "htf_agreement": htf.agreement[i],
            "entry_price": r.entry_price,
            "stop_loss": r.stop_loss,
            "take_profits": list(r.take_profits),
            "risk_reward_ratio": r.risk_reward_ratio,
            "targets_r": list(r.targets_r),
            "entry_strategy": r.entry_strategy,
            "entry_pattern": r.entry_pattern,
            "entry_confidence": r.entry_confidence,
            "atr": r.atr,
            "entry_improvement_bps": r.entry_improvement_bps,
            "fallback_reason": r.fallback_reason,
            "refinement_error": r.error,
            "entry_analysis": r.analysis,
            "status": "PENDING",
            "expires_at": ts + valid_for,
        })  # fmt: skip
    return _typed(pd.DataFrame.from_records(records, columns=SIGNAL_COLUMNS))


_FLOAT_COLUMNS = (
    "signal_confidence", "consensus_confidence", "market_price", "entry_price", "stop_loss",
    "risk_reward_ratio", "entry_confidence", "atr", "entry_improvement_bps",
)  # fmt: skip


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Fix dtypes so they never depend on the values (e.g. an all-None column)."""
    for col in SIGNAL_COLUMNS:
        if col in _FLOAT_COLUMNS:
            df[col] = df[col].astype(np.float64)
        elif col in ("timestamp", "expires_at"):
            df[col] = pd.to_datetime(df[col], utc=True).dt.as_unit("ns")
        else:  # text, JSON objects and lists: plain Python objects, None for missing
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df
