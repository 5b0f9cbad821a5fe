"""The refined entry of a signal and its analysis record (SPEC §6), built from the
column-wise outcome of :mod:`entry_refinement`'s vectorised core.

Prices (entry, stop, targets, ``atr``) are in price units, ``targets_r`` in R (distance /
|entry - stop|), ``entry_improvement_bps`` in basis points of the market price (positive =
a better price than the market). ``analysis`` is what ``mtf_entry_analysis_history`` keeps:
every candidate's level, distance in ATR, score, the choice and any fallback reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alphapulse_dagster.config import EntryParameters
from alphapulse_dagster.direction import LONG, SHORT
from alphapulse_dagster.signals.entry_candidates import (
    INSUFFICIENT_DATA,
    MARKET_ENTRY,
    NO_KEY_LEVEL,
    REFINEMENT_ERROR,
    CandidateTable,
    pattern_for,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RefinedEntry:
    """A refined entry: prices in price units, ``atr`` in price units, R in risk units."""

    symbol: str
    direction: str
    market_price: float
    entry_price: float
    stop_loss: float
    take_profits: tuple[float, ...]
    risk_reward_ratio: float
    targets_r: tuple[float, ...]
    entry_strategy: str
    entry_pattern: str
    entry_confidence: float
    atr: float
    entry_improvement_bps: float
    fallback_reason: str | None = None
    error: str | None = None
    analysis: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        d = asdict(self)
        d["take_profits"] = list(self.take_profits)
        d["targets_r"] = list(self.targets_r)
        return d


@dataclass(frozen=True)
class Outcome:
    """Column-wise results of the vectorised core for M signals."""

    pattern: list[str | None]  # None = refined; else a fallback pattern
    error: list[str | None]
    entry: FloatArray
    stop: FloatArray
    targets: FloatArray
    atr: FloatArray
    confidence: FloatArray
    choice: IntArray  # winning candidate column, -1 for market entries
    table: CandidateTable | None = None
    score: FloatArray | None = None
    distance: FloatArray | None = None
    confluent: IntArray | None = None


def _json(v: float) -> float | None:
    return round(float(v), 10) if math.isfinite(v) else None


def _candidate_records(o: Outcome, i: int, sign: int) -> list[dict[str, Any]]:
    """Every candidate of signal ``i`` as the analysis record lists it."""
    if o.table is None:
        return []
    records = []
    for k, column in enumerate(o.table.columns):
        records.append(
            {
                "strategy": column.strategy,
                "pattern": pattern_for(column, sign),
                "level": _json(o.table.level[i, k]),
                "distance_atr": _json(o.distance[i, k]) if o.distance is not None else None,
                "score": _json(o.score[i, k]) if o.score is not None else None,
                "confluent_levels": int(o.confluent[i, k]) if o.confluent is not None else 0,
                "valid": int(o.table.reason[i, k]) == 0,
                "rejected_because": o.table.rejected_because(i, k),
                "chosen": bool(k == o.choice[i]),
            }
        )
    return records


def assemble(
    p: EntryParameters, o: Outcome, symbols: Sequence[str], sign: IntArray, market: FloatArray
) -> list[RefinedEntry]:
    """One :class:`RefinedEntry` per signal, with its analysis record."""
    out = []
    risk = np.abs(o.entry - o.stop)
    with np.errstate(invalid="ignore", divide="ignore"):
        targets_r = np.abs(o.targets - o.entry[:, None]) / risk[:, None]
        improvement = sign * (market - o.entry) / market * 1e4
    for i, symbol in enumerate(symbols):
        side = LONG if sign[i] > 0 else SHORT
        c = o.choice[i]
        fallback = o.pattern[i]
        if c >= 0 and o.table is not None:
            chosen = o.table.columns[c]
            strategy, pattern = chosen.strategy, pattern_for(chosen, int(sign[i]))
            if o.confluent is not None and o.confluent[i, c] > 0:
                pattern += "_CONFLUENCE"
        else:
            strategy, pattern = MARKET_ENTRY, fallback or NO_KEY_LEVEL
        analysis = {
            "symbol": symbol,
            "direction": side,
            "market_price": _json(market[i]),
            "atr": _json(o.atr[i]),
            "atr_source": "fallback_estimate"
            if fallback in (INSUFFICIENT_DATA, REFINEMENT_ERROR)
            else f"entry_tf_atr_{p.atr_period}",
            "candidates": _candidate_records(o, i, int(sign[i]))
            if fallback in (None, NO_KEY_LEVEL)
            else [],
            "chosen": strategy,
            "entry_pattern": pattern,
            "fallback_reason": fallback,
            "error": o.error[i],
            "entry_valid_bars": p.entry_valid_bars,
        }
        out.append(
            RefinedEntry(
                symbol=symbol,
                direction=side,
                market_price=float(market[i]),
                entry_price=float(o.entry[i]),
                stop_loss=float(o.stop[i]),
                take_profits=tuple(float(t) for t in o.targets[i]),
                risk_reward_ratio=float(targets_r[i, 0]),
                targets_r=tuple(float(r) for r in targets_r[i]),
                entry_strategy=strategy,
                entry_pattern=pattern,
                entry_confidence=float(o.confidence[i]),
                atr=float(o.atr[i]),
                entry_improvement_bps=float(improvement[i]),
                fallback_reason=fallback,
                error=o.error[i],
                analysis=analysis,
            )
        )
    return out
