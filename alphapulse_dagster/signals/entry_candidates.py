"""Entry candidates, their scores and the risk levels of an entry (see entry_refinement).

Levels and stops are in price units, distances in ATR multiples; direction ``sign`` is +1
for LONG and -1 for SHORT. All functions work on arrays of M signals at once.

A *family* of entry ideas is one function ``(EntryParameters, MarketView) -> [Candidate]``
listed in :data:`FAMILIES`. Each :class:`Candidate` carries everything the refinement needs
to rank and report it: its strategy and pattern names, its base score, its level and its
invalidation edge per signal, and the family's own rejection rule if it has one. To add an
entry strategy, write its family function here (or in its own module) and list it in
``FAMILIES``; its settings, if any, go in ``config.EntryParameters``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alphapulse_dagster.config import EntryParameters, RiskParameters
from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.signals import key_levels as kl

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

MARKET_ENTRY = "MARKET_ENTRY"
NO_KEY_LEVEL, INSUFFICIENT_DATA, REFINEMENT_ERROR = (
    "NO_KEY_LEVEL",
    "INSUFFICIENT_DATA",
    "REFINEMENT_ERROR",
)
FALLBACK_CONFIDENCE = {NO_KEY_LEVEL: 0.5, INSUFFICIENT_DATA: 0.3, REFINEMENT_ERROR: 0.2}
DEFAULT_BASE_SCORE = 0.55  # for configured Fibonacci levels / EMA periods without a score
CONFLUENCE_BONUS, MAX_CONFLUENT, DISTANCE_PENALTY_PER_ATR = 0.10, 2, 0.03

# Why a candidate is not valid (0 = valid). OWN_RULE is the family's rule (Candidate.rule).
UNDEFINED, WRONG_SIDE, TOO_FAR, OWN_RULE = 1, 2, 3, 4
REASONS = {
    UNDEFINED: "level undefined (not enough structure)",
    WRONG_SIDE: "not on the entry side of the market price",
    TOO_FAR: "beyond max_entry_distance_atr",
}


@dataclass(frozen=True)
class MarketView:
    """The M signals as each sees the market at its signal time: entry-timeframe features,
    the row and last closed bar of each signal's symbol, its direction and market price."""

    features: kl.EntryFeatures
    bars: Bars
    rows: IntArray
    j: IntArray
    sign: IntArray
    market: FloatArray


@dataclass(frozen=True)
class Candidate:
    """One entry idea for M signals."""

    strategy: str  # entry_strategy when chosen, e.g. FIBONACCI_618
    pattern: str  # entry_pattern when chosen, e.g. FIB_0.618_RETRACEMENT
    family: str  # confluence counts levels of *other* families only
    base_score: float
    level: FloatArray  # (M,) limit price, NaN when the structure is missing
    invalidation: FloatArray  # (M,) price beyond which the idea is wrong (the stop's edge)
    rule: str | None = None  # the family's own rejection rule, in words
    breaks_rule: BoolArray | None = None  # (M,) True where ``rule`` rejects the level
    trend_in_pattern: bool = False  # the chosen pattern is prefixed BULLISH_ / BEARISH_
    short_pattern: str | None = None  # the pattern of a SHORT, when the mirror renames it


def pattern_for(candidate: Candidate, sign: int) -> str:
    """``entry_pattern`` of one signal entered at ``candidate`` (direction ``sign``)."""
    pattern = candidate.short_pattern if sign < 0 and candidate.short_pattern else candidate.pattern
    if candidate.trend_in_pattern:
        pattern = ("BULLISH_" if sign > 0 else "BEARISH_") + pattern
    return pattern


Family = Callable[[EntryParameters, MarketView], list[Candidate]]

_FIBONACCI_SCORES = {"FIBONACCI_500": 0.65, "FIBONACCI_618": 0.70, "FIBONACCI_786": 0.60}
_EMA_SCORES = {21: 0.62, 50: 0.58}
_ORDER_BLOCK_SCORE = 0.72


def fibonacci_retracements(p: EntryParameters, v: MarketView) -> list[Candidate]:
    """LONG: level = high - f x (high - low) of the latest confirmed swing leg low->high;
    invalid beyond the leg's low."""
    legs = kl.swing_legs(v.features, v.rows, v.j, v.sign)
    names = [f"FIBONACCI_{round(fib * 1000):03d}" for fib in p.fibonacci_levels]
    return [
        Candidate(
            strategy=name,
            pattern=f"FIB_{fib:g}_RETRACEMENT",
            family="FIBONACCI",
            base_score=_FIBONACCI_SCORES.get(name, DEFAULT_BASE_SCORE),
            level=legs.end - fib * (legs.end - legs.start),
            invalidation=legs.start,
        )
        for name, fib in zip(names, p.fibonacci_levels, strict=True)
    ]


def ema_pullbacks(p: EntryParameters, v: MarketView) -> list[Candidate]:
    """LONG: the EMA (fastest first) as the level when the fast EMA is above the slow one;
    invalid beyond the latest confirmed swing low."""
    f, rows, j, sign = v.features, v.rows, v.j, v.sign
    fast, slow = f.emas[p.ema_periods[0]][rows, j], f.emas[p.ema_periods[-1]][rows, j]
    with np.errstate(invalid="ignore"):
        trend_ok = sign * (fast - slow) > 0 if len(p.ema_periods) > 1 else np.ones(len(rows), bool)
    swing_edge = np.where(sign > 0, f.swing_low[rows, j], f.swing_high[rows, j])
    return [
        Candidate(
            strategy="EMA_PULLBACK",
            pattern=f"EMA_{period}_PULLBACK",
            family="EMA",
            base_score=_EMA_SCORES.get(period, DEFAULT_BASE_SCORE),
            level=f.emas[period][rows, j],
            invalidation=swing_edge,
            rule="no EMA trend agreement",
            breaks_rule=~trend_ok,
        )
        for period in p.ema_periods
    ]


def order_blocks(p: EntryParameters, v: MarketView) -> list[Candidate]:
    """LONG: the latest unmitigated bullish order block below the market, entered at its
    top or middle; invalid beyond its bottom. SHORT mirrored: a bearish block above the
    market, entered at its near edge — its BOTTOM (``top`` names the near edge of a
    bullish block) — and labelled by that edge."""
    ob = kl.unmitigated_order_blocks(
        v.features, v.bars, v.rows, v.j, v.sign, v.market, p.order_block_lookback_bars
    )
    top = p.order_block_entry == "top"
    return [
        Candidate(
            strategy="ORDER_BLOCK",
            pattern=f"ORDER_BLOCK_{p.order_block_entry.upper()}",
            family="ORDER_BLOCK",
            base_score=_ORDER_BLOCK_SCORE,
            level=ob.proximal if top else (ob.proximal + ob.distal) / 2,
            invalidation=ob.distal,
            trend_in_pattern=True,
            short_pattern="ORDER_BLOCK_BOTTOM" if top else None,
        )
    ]


#: Every entry family, in candidate order (a score tie goes to the earlier candidate).
FAMILIES: tuple[Family, ...] = (fibonacci_retracements, ema_pullbacks, order_blocks)


@dataclass(frozen=True)
class CandidateTable:
    """All candidates of M signals side by side: column k is ``columns[k]``."""

    columns: list[Candidate]
    level: FloatArray  # (M, C)
    invalidation: FloatArray  # (M, C)
    reason: NDArray[np.int8]  # (M, C) 0 = valid, else UNDEFINED / WRONG_SIDE / ...

    def rejected_because(self, i: int, k: int) -> str | None:
        code = int(self.reason[i, k])
        return self.columns[k].rule if code == OWN_RULE else REASONS.get(code)


def candidates(p: EntryParameters, v: MarketView, atr: FloatArray) -> CandidateTable:
    """Every family's candidates, each checked: defined, on the entry side of the market,
    within ``max_entry_distance_atr`` ATR, and passing its family's own rule."""
    columns = [c for family in FAMILIES for c in family(p, v)]
    m = len(v.rows)
    level = np.stack([c.level for c in columns], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = v.sign[:, None] * (v.market[:, None] - level) / atr[:, None]
    no_rule = np.zeros(m, dtype=bool)
    breaks = np.stack([no_rule if c.breaks_rule is None else c.breaks_rule for c in columns], 1)
    reason = np.zeros(level.shape, dtype=np.int8)
    reason[breaks] = OWN_RULE
    with np.errstate(invalid="ignore"):
        reason[distance > p.max_entry_distance_atr] = TOO_FAR
        reason[~(distance > 0)] = WRONG_SIDE
    reason[~np.isfinite(level)] = UNDEFINED
    invalidation = np.stack([c.invalidation for c in columns], axis=1)
    return CandidateTable(columns, level, invalidation, reason)


def score_candidates(
    p: EntryParameters, t: CandidateTable, sign: IntArray, market: FloatArray, atr: FloatArray
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Scores (-inf when invalid), distance in ATR and confluence count, each (M, C).

    Score = base score + ``CONFLUENCE_BONUS`` per valid level of another family within
    ``confluence_atr_fraction`` ATR (at most ``MAX_CONFLUENT``) - ``DISTANCE_PENALTY_PER_ATR``
    per ATR of distance from the market."""
    valid = t.reason == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = sign[:, None] * (market[:, None] - t.level) / atr[:, None]
        gap = np.abs(t.level[:, :, None] - t.level[:, None, :]) / atr[:, None, None]
    fam = np.array([c.family for c in t.columns])
    other_family = fam[:, None] != fam[None, :]
    close_by = (gap <= p.confluence_atr_fraction) & other_family[None] & valid[:, None, :]
    confluent = np.where(valid, close_by.sum(axis=2), 0)
    base = np.array([c.base_score for c in t.columns])
    score = (
        base[None, :]
        + CONFLUENCE_BONUS * np.minimum(confluent, MAX_CONFLUENT)
        - DISTANCE_PENALTY_PER_ATR * np.nan_to_num(distance)
    )
    return np.where(valid, score, -np.inf), distance, confluent.astype(np.int64)


def risk_levels(
    r: RiskParameters, sign: IntArray, entry: FloatArray, atr: FloatArray, edge: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Stop and targets (M, T) in price units: stop = entry - ``stop_loss_atr_multiplier``
    x ATR, or ``stop_buffer_atr`` x ATR beyond the invalidation edge when that is further;
    target k = entry + multiplier k x ATR (LONG; SHORT mirrored)."""
    atr_stop = entry - sign * r.stop_loss_atr_multiplier * atr
    beyond = edge - sign * r.stop_buffer_atr * atr
    with np.errstate(invalid="ignore"):
        further = np.isfinite(beyond) & (sign * (atr_stop - beyond) > 0) & (beyond > 0)
    stop = np.where(further, beyond, atr_stop)
    mult = np.sort(np.asarray(r.take_profit_atr_multipliers, dtype=np.float64))
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
