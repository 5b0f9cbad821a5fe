"""MTF entry refinement (SPEC section 6): a better limit price near a key level.

Input per signal: symbol, direction (LONG/SHORT), market price (the signal bar's close, in
price units) and the entry-timeframe bars closed at or before the signal time. Output: a
:class:`RefinedEntry` with entry, stop and targets (price), risk:reward and per-target R
(R = distance / |entry - stop|), the entry-timeframe ATR(14) (price), the entry improvement
versus the market price in basis points (positive = better price) and an ``analysis`` dict
(every candidate's level, distance in ATR, score, the choice and any fallback reason);
see :mod:`refined_entry`. Parameters: ``config.MtfStrategies`` (its ``entry`` and ``risk``
sections with ``min_entry_candles`` and ``fallback_atr_pct``), validated once at load.

Candidates (LONG; SHORT mirrored), one family each in ``entry_candidates.FAMILIES``:
``FIBONACCI_500/618/786`` on the latest confirmed swing leg low->high (level = high - f *
(high - low)); ``EMA_PULLBACK`` on EMA 21 then 50 when they are below price and EMA21 >
EMA50; ``ORDER_BLOCK`` on the latest unmitigated bullish order block (top or middle). A
candidate is valid only strictly below the market and within ``max_entry_distance_atr``
ATR. Score = the candidate's base score + 0.10 per confluent level of another family
within ``confluence_atr_fraction`` ATR (at most 2) - 0.03 per ATR of distance;
``entry_confidence`` = score clipped to [0, 1]. The best score wins (ties: the first in
candidate order); none => ``MARKET_ENTRY`` / ``NO_KEY_LEVEL`` (confidence 0.5).

Fallbacks (market entry, ATR estimated as ``fallback_atr_pct`` x price): fewer than
``min_entry_candles`` => ``INSUFFICIENT_DATA`` (confidence 0.3, a logged warning); any error,
corrupted candles or a result breaking the invariants => ``REFINEMENT_ERROR`` (confidence
0.2, error text kept). One bad symbol never fails the batch.

Risk: stop = entry - ``stop_loss_atr_multiplier`` x ATR, or ``stop_buffer_atr`` x ATR beyond
the invalidating level (leg low, order-block bottom, latest swing low for EMA entries) when
that is further; targets = entry + m x ATR for each take-profit multiplier, nearest first.
Invariants (checked on every result): LONG => 0 < stop < entry < every target; SHORT =>
0 < every target < entry < stop; all finite.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from alphapulse_dagster.config import MtfStrategies
from alphapulse_dagster.direction import direction_sign
from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.signals import key_levels as kl
from alphapulse_dagster.signals.entry_candidates import (
    FALLBACK_CONFIDENCE,
    INSUFFICIENT_DATA,
    NO_KEY_LEVEL,
    REFINEMENT_ERROR,
    MarketView,
    candidates,
    invariants_hold,
    risk_levels,
    score_candidates,
)
from alphapulse_dagster.signals.refined_entry import Outcome, RefinedEntry, assemble

log = logging.getLogger(__name__)

_OHLCV = ("open", "high", "low", "close", "volume")

__all__ = [
    "RefinedEntry",
    "error_fallback",
    "refine_entries",
    "refine_entry",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _refine_core(
    p: MtfStrategies,
    bars: Bars,
    rows: IntArray,
    j: IntArray,
    sign: IntArray,
    market: FloatArray,
    features: kl.EntryFeatures | None = None,
) -> Outcome:
    m = len(rows)
    e = p.entry
    f = features or kl.entry_features(bars, e.ema_periods, e.swing_confirmation_bars, e.atr_period)
    jj = np.maximum(j, 0)
    count = np.where(j >= 0, f.valid_count[rows, jj], 0)
    window = max(e.order_block_lookback_bars, p.min_entry_candles)
    start = jj - window
    bad = f.bad_count[rows, jj] - np.where(start >= 0, f.bad_count[rows, np.maximum(start, 0)], 0)
    atr = f.atr[rows, jj]
    pattern: list[str | None] = [None] * m
    error: list[str | None] = [None] * m
    for i in range(m):
        if not (math.isfinite(market[i]) and market[i] > 0):
            pattern[i], error[i] = REFINEMENT_ERROR, "market price must be finite and > 0"
        elif j[i] < 0 or count[i] < p.min_entry_candles:
            pattern[i] = INSUFFICIENT_DATA
            error[i] = f"{int(count[i])} entry candles < min_entry_candles {p.min_entry_candles}"
        elif bad[i] > 0:
            pattern[i] = REFINEMENT_ERROR
            error[i] = (
                f"corrupted entry candles: {int(bad[i])} bad bar(s) in the last {window} "
                "(non-finite or non-positive prices, or OHLC inconsistent)"
            )
        elif not (math.isfinite(atr[i]) and atr[i] > 0):
            pattern[i], error[i] = (
                REFINEMENT_ERROR,
                f"entry-timeframe ATR is not positive: {atr[i]}",
            )
    ok = np.array([pt is None for pt in pattern], dtype=bool)
    safe_atr = np.where(ok, atr, 1.0)
    safe_market = np.where(ok, market, 1.0)
    table = candidates(e, MarketView(f, bars, rows, jj, sign, safe_market), safe_atr)
    table.reason[~ok] = 1
    score, distance, confluent = score_candidates(e, table, sign, safe_market, safe_atr)
    best = np.argmax(score, axis=1)
    pick = np.arange(m)
    has = np.isfinite(score[pick, best])
    choice = np.where(has, best, -1)
    entry = np.where(has, table.level[pick, best], market)
    edge = np.where(has, table.invalidation[pick, best], np.nan)
    confidence = np.where(
        has, np.clip(score[pick, best], 0.0, 1.0), FALLBACK_CONFIDENCE[NO_KEY_LEVEL]
    )
    for i in np.nonzero(ok & ~has)[0].tolist():
        pattern[i] = NO_KEY_LEVEL
    # Fallbacks that estimate ATR from the price.
    fallback = ~ok
    atr_used = np.where(fallback, p.fallback_atr_pct * market, atr)
    entry = np.where(fallback, market, entry)
    for i in np.nonzero(fallback)[0].tolist():
        confidence[i] = FALLBACK_CONFIDENCE[pattern[i] or REFINEMENT_ERROR]
        choice[i] = -1
    stop, targets = risk_levels(p.risk, sign, entry, atr_used, edge)
    broken = ~invariants_hold(sign, entry, stop, targets)
    redo = broken & ~fallback
    for i in np.nonzero(redo)[0].tolist():
        pattern[i] = REFINEMENT_ERROR
        error[i] = (
            f"risk invariants violated (entry {entry[i]}, stop {stop[i]}, "
            f"targets {targets[i].tolist()})"
        )
    if redo.any():
        atr_used = np.where(redo, p.fallback_atr_pct * market, atr_used)
        entry = np.where(redo, market, entry)
        confidence = np.where(redo, FALLBACK_CONFIDENCE[REFINEMENT_ERROR], confidence)
        choice = np.where(redo, -1, choice)
        stop2, targets2 = risk_levels(p.risk, sign, entry, atr_used, np.full(m, np.nan))
        stop = np.where(redo, stop2, stop)
        targets = np.where(redo[:, None], targets2, targets)
    return Outcome(
        pattern, error, entry, stop, targets, atr_used, confidence, choice,
        table, score, distance, confluent,
    )  # fmt: skip


def refine_entries(
    entry_bars: Bars,
    rows: ArrayLike,
    bar_index: ArrayLike,
    directions: ArrayLike,
    market_prices: ArrayLike,
    symbols: Sequence[str],
    params: MtfStrategies = MtfStrategies(),
    features: kl.EntryFeatures | None = None,
) -> list[RefinedEntry]:
    """Refine many signals at once (vectorised over signals and symbols).

    ``entry_bars`` holds entry-timeframe bars ``(n_symbols, n_bars)``; signal ``i`` belongs
    to row ``rows[i]`` and may use bars ``0 .. bar_index[i]`` (the last entry bar closed at
    or before the signal time; ``-1`` if none). ``directions`` are +1/-1 or LONG/SHORT,
    ``market_prices`` the signal bars' closes. ``features`` may pass precomputed
    :func:`key_levels.entry_features` of ``entry_bars`` to share them across calls.
    Never raises for bad data: such signals get a ``REFINEMENT_ERROR`` fallback.
    """
    rows_a = np.asarray(rows, dtype=np.int64)
    j = np.asarray(bar_index, dtype=np.int64)
    sign = np.array([direction_sign(d) for d in np.asarray(directions).tolist()], dtype=np.int64)
    market = np.asarray(market_prices, dtype=np.float64)
    symbols = list(symbols)
    if not len(rows_a) == len(j) == len(sign) == len(market) == len(symbols):
        raise ValueError("rows, bar_index, directions, market_prices, symbols differ in length")
    if len(rows_a) == 0:
        return []
    bars, core_rows = entry_bars, rows_a
    if features is None:
        # Only the signalled symbols, only up to their latest usable bar: causal features
        # of a prefix equal those of the whole series, and this is the hot path's saving.
        used, core_rows = np.unique(rows_a, return_inverse=True)
        width = max(int(j.max()) + 1, 1)
        bars = Bars(*(getattr(entry_bars, c)[used, :width] for c in _OHLCV))
    try:
        outcome = _refine_core(params, bars, core_rows, j, sign, market, features)
        results = assemble(params.entry, outcome, symbols, sign, market)
    except Exception:
        if len(rows_a) == 1:
            raise
        log.exception("vectorised refinement failed; refining %d signals one by one", len(rows_a))
        results = [
            _refine_one_guarded(params, entry_bars, rows_a[i], j[i], sign[i], market[i], symbols[i])
            for i in range(len(rows_a))
        ]
    _warn_fallbacks(results)
    return results


def _refine_one_guarded(
    p: MtfStrategies, bars: Bars, row: int, j: int, sign: int, market: float, symbol: str
) -> RefinedEntry:
    try:
        one = bars.take_rows([row])
        outcome = _refine_core(
            p, one, np.zeros(1, np.int64), np.array([j]), np.array([sign]), np.array([market])
        )
        return assemble(p.entry, outcome, [symbol], np.array([sign]), np.array([market]))[0]
    except Exception as exc:  # one bad symbol never fails the batch
        return error_fallback(symbol, sign, market, f"{type(exc).__name__}: {exc}", p)


def error_fallback(
    symbol: str,
    direction: str | int,
    market_price: float,
    error: str,
    params: MtfStrategies = MtfStrategies(),
) -> RefinedEntry:
    """The ``REFINEMENT_ERROR`` market entry for a signal whose refinement raised."""
    sign = np.array([direction_sign(direction)], dtype=np.int64)
    market = np.array([float(market_price)])
    atr = params.fallback_atr_pct * market
    stop, targets = risk_levels(params.risk, sign, market, atr, np.full(1, np.nan))
    confidence = np.array([FALLBACK_CONFIDENCE[REFINEMENT_ERROR]])
    outcome = Outcome(
        [REFINEMENT_ERROR], [error], market, stop, targets, atr, confidence, np.array([-1])
    )
    return assemble(params.entry, outcome, [symbol], sign, market)[0]


def _warn_fallbacks(results: Sequence[RefinedEntry]) -> None:
    for pattern in (INSUFFICIENT_DATA, REFINEMENT_ERROR):
        hit = [r for r in results if r.fallback_reason == pattern]
        if hit:
            sample = ", ".join(f"{r.symbol} ({r.error})" for r in hit[:5])
            log.warning(
                "%d signal(s) fell back to MARKET_ENTRY/%s: %s%s",
                len(hit),
                pattern,
                sample,
                " ..." if len(hit) > 5 else "",
            )


def refine_entry(
    symbol: str,
    direction: str | int,
    market_price: float,
    entry_candles: pd.DataFrame,
    params: MtfStrategies = MtfStrategies(),
) -> RefinedEntry:
    """Refine one signal. ``entry_candles``: the symbol's entry-timeframe bars closed at or
    before the signal time, oldest first (columns open, high, low, close, volume)."""
    try:
        bars = Bars.from_frame(entry_candles)
        j = bars.shape[1] - 1
        return refine_entries(bars, [0], [j], [direction], [market_price], [symbol], params)[0]
    except Exception as exc:
        result = error_fallback(
            symbol, direction, market_price, f"{type(exc).__name__}: {exc}", params
        )
        _warn_fallbacks([result])
        return result
