"""Entry candidates, their scores and the risk levels of an entry (see entry_refinement).

Levels and stops are in price units, distances in ATR multiples; direction ``sign`` is +1
for LONG and -1 for SHORT. All functions work on arrays of M signals at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.signals import key_levels as kl

if TYPE_CHECKING:
    from alphapulse_dagster.signals.entry_refinement import RefinementParams

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MARKET_ENTRY = "MARKET_ENTRY"
NO_KEY_LEVEL, INSUFFICIENT_DATA, REFINEMENT_ERROR = (
    "NO_KEY_LEVEL",
    "INSUFFICIENT_DATA",
    "REFINEMENT_ERROR",
)
FALLBACK_CONFIDENCE = {NO_KEY_LEVEL: 0.5, INSUFFICIENT_DATA: 0.3, REFINEMENT_ERROR: 0.2}
BASE_SCORES = {
    "FIBONACCI_500": 0.65,
    "FIBONACCI_618": 0.70,
    "FIBONACCI_786": 0.60,
    "EMA_PULLBACK_21": 0.62,
    "EMA_PULLBACK_50": 0.58,
    "ORDER_BLOCK": 0.72,
}
DEFAULT_BASE_SCORE = 0.55  # for configured Fibonacci levels / EMA periods not listed above
CONFLUENCE_BONUS, MAX_CONFLUENT, DISTANCE_PENALTY_PER_ATR = 0.10, 2, 0.03

REASONS = {
    1: "level undefined (not enough structure)",
    2: "not on the entry side of the market price",
    3: "beyond max_entry_distance_atr",
    4: "no EMA trend agreement",
}


def direction_sign(direction: str | int) -> int:
    """``'LONG'``/``'BULLISH'``/+1 -> +1, ``'SHORT'``/``'BEARISH'``/-1 -> -1."""
    if isinstance(direction, str):
        name = direction.strip().upper()
        if name in ("LONG", "BULLISH"):
            return 1
        if name in ("SHORT", "BEARISH"):
            return -1
    elif direction in (1, -1):
        return int(direction)
    raise ValueError(f"direction must be LONG or SHORT, got {direction!r}")


@dataclass(frozen=True)
class Candidates:
    names: list[str]  # entry_strategy per column
    labels: list[str]  # entry_pattern per column
    families: list[str]
    level: FloatArray  # (M, C)
    invalidation: FloatArray  # (M, C) price beyond which the idea is wrong
    reason: NDArray[np.int8]  # (M, C) 0 = valid, else a key of REASONS


def candidates(
    p: RefinementParams,
    f: kl.EntryFeatures,
    bars: Bars,
    rows: IntArray,
    j: IntArray,
    sign: IntArray,
    market: FloatArray,
    atr: FloatArray,
) -> Candidates:
    names, labels, families, levels, edges, extra = [], [], [], [], [], []
    legs = kl.swing_legs(f, rows, j, sign)
    for fib in p.fibonacci_levels:
        names.append(f"FIBONACCI_{round(fib * 1000):03d}")
        labels.append(f"FIB_{fib:g}_RETRACEMENT")
        families.append("FIBONACCI")
        levels.append(legs.end - fib * (legs.end - legs.start))
        edges.append(legs.start)
        extra.append(np.zeros(len(rows), dtype=bool))
    fast, slow = f.emas[p.ema_periods[0]][rows, j], f.emas[p.ema_periods[-1]][rows, j]
    with np.errstate(invalid="ignore"):
        trend_ok = sign * (fast - slow) > 0 if len(p.ema_periods) > 1 else np.ones(len(rows), bool)
    swing_edge = np.where(sign > 0, f.swing_low[rows, j], f.swing_high[rows, j])
    for period in p.ema_periods:
        names.append("EMA_PULLBACK")
        labels.append(f"EMA_{period}_PULLBACK")
        families.append("EMA")
        levels.append(f.emas[period][rows, j])
        edges.append(swing_edge)
        extra.append(~trend_ok)
    ob = kl.unmitigated_order_blocks(f, bars, rows, j, sign, market, p.order_block_lookback_bars)
    names.append("ORDER_BLOCK")
    labels.append(f"ORDER_BLOCK_{p.order_block_entry.upper()}")
    families.append("ORDER_BLOCK")
    levels.append(ob.proximal if p.order_block_entry == "top" else (ob.proximal + ob.distal) / 2)
    edges.append(ob.distal)
    extra.append(np.zeros(len(rows), dtype=bool))

    level = np.stack(levels, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = sign[:, None] * (market[:, None] - level) / atr[:, None]
    reason = np.zeros(level.shape, dtype=np.int8)
    reason[np.stack(extra, axis=1)] = 4
    with np.errstate(invalid="ignore"):
        reason[distance > p.max_entry_distance_atr] = 3
        reason[~(distance > 0)] = 2
    reason[~np.isfinite(level)] = 1
    return Candidates(names, labels, families, level, np.stack(edges, axis=1), reason)


def score_candidates(
    p: RefinementParams, c: Candidates, sign: IntArray, market: FloatArray, atr: FloatArray
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Scores (-inf when invalid), distance in ATR and confluence count, each (M, C)."""
    valid = c.reason == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = sign[:, None] * (market[:, None] - c.level) / atr[:, None]
        gap = np.abs(c.level[:, :, None] - c.level[:, None, :]) / atr[:, None, None]
    fam = np.array(c.families)
    other_family = fam[:, None] != fam[None, :]
    close_by = (gap <= p.confluence_atr_fraction) & other_family[None] & valid[:, None, :]
    confluent = np.where(valid, close_by.sum(axis=2), 0)
    base = np.array(
        [
            BASE_SCORES.get(_score_key(n, lab), DEFAULT_BASE_SCORE)
            for n, lab in zip(c.names, c.labels, strict=True)
        ]
    )
    score = (
        base[None, :]
        + CONFLUENCE_BONUS * np.minimum(confluent, MAX_CONFLUENT)
        - DISTANCE_PENALTY_PER_ATR * np.nan_to_num(distance)
    )
    return np.where(valid, score, -np.inf), distance, confluent.astype(np.int64)


def _score_key(name: str, label: str) -> str:
    if name == "EMA_PULLBACK":
        return f"EMA_PULLBACK_{label.split('_')[1]}"
    return name


def risk_levels(
    p: RefinementParams, sign: IntArray, entry: FloatArray, atr: FloatArray, edge: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Stop and targets (M, T) in price units; see the module docstring."""
    atr_stop = entry - sign * p.stop_loss_atr_multiplier * atr
    beyond = edge - sign * p.stop_buffer_atr * atr
    with np.errstate(invalid="ignore"):
        further = np.isfinite(beyond) & (sign * (atr_stop - beyond) > 0) & (beyond > 0)
    stop = np.where(further, beyond, atr_stop)
    mult = np.sort(np.asarray(p.take_profit_atr_multipliers, dtype=np.float64))
    targets = entry[:, None] + (sign * atr)[:, None] * mult[None, :]
    return stop, targets


def invariants_hold(
    sign: IntArray, entry: FloatArray, stop: FloatArray, targets: FloatArray
) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(entry) & np.isfinite(stop) & np.isfinite(targets).all(axis=1)
        positive = (entry > 0) & (stop > 0) & (targets > 0).all(axis=1)
        ordered = (sign * (entry - stop) > 0) & (
            sign[:, None] * (targets - entry[:, None]) > 0
        ).all(axis=1)
    return finite & positive & ordered
