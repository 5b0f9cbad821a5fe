"""Higher-timeframe (HTF) alignment of a signal, from CLOSED higher-timeframe bars only.

Rule per HTF bar ``i`` (uses HTF bars ``<= i``):

* ``BULLISH`` when close > EMA(ema_period) and the EMA rose over the last ``slope_bars``;
* ``BEARISH`` when close < EMA and the EMA fell over the last ``slope_bars``;
* ``NEUTRAL`` otherwise, including while the EMA is not yet defined (short history).

A signal at time ``t`` (its signal bar's close) sees the last HTF bar whose close time is
``<= t`` -- freqtrade's ``merge_informative_pair`` idea: a 1d bar opening 2024-01-01 00:00
is visible from 2024-01-02 00:00 on, never earlier. No closed HTF bar yet => ``NEUTRAL``.

Agreement with the signal direction (LONG needs BULLISH, SHORT needs BEARISH), over the
non-NEUTRAL timeframes: all agree => ``ALIGNED``; all disagree => ``COUNTER``; a mix, or
every timeframe NEUTRAL, or no HTF configured => ``MIXED``.

Confidence adjustment (added to the signal confidence, result clipped to [0, 1]):
ALIGNED ``+aligned_bonus`` (0.10), MIXED ``+mixed_adjustment`` (0.0), COUNTER
``-counter_penalty`` (0.20).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from alphapulse_dagster.market import indicators as ind
from alphapulse_dagster.market.bars import BarPanel, Bars, last_closed_bar

BULLISH, BEARISH, NEUTRAL = "BULLISH", "BEARISH", "NEUTRAL"
ALIGNED, COUNTER, MIXED = "ALIGNED", "COUNTER", "MIXED"
_TREND_NAMES = {1: BULLISH, -1: BEARISH, 0: NEUTRAL}


@dataclass(frozen=True)
class HTFRule:
    """Parameters of the HTF trend state and of the confidence adjustment."""

    ema_period: int = 21
    slope_bars: int = 3
    aligned_bonus: float = 0.10
    mixed_adjustment: float = 0.0
    counter_penalty: float = 0.20


def htf_trend(bars: Bars, rule: HTFRule = HTFRule()) -> NDArray[np.int8]:
    """+1 BULLISH / -1 BEARISH / 0 NEUTRAL per HTF bar, ``(n_symbols, n_bars)``."""
    ema = ind.ema(bars.close, rule.ema_period)
    slope = ema - ind.lag(ema, rule.slope_bars)
    with np.errstate(invalid="ignore"):
        bull = (bars.close > ema) & (slope > 0)
        bear = (bars.close < ema) & (slope < 0)
    return np.where(bull, 1, np.where(bear, -1, 0)).astype(np.int8)


def htf_agreement(direction: int, alignment: Mapping[str, str]) -> str:
    """ALIGNED / COUNTER / MIXED for a signal direction (+1 LONG, -1 SHORT)."""
    want = BULLISH if direction > 0 else BEARISH
    votes = [state for state in alignment.values() if state != NEUTRAL]
    if votes and all(v == want for v in votes):
        return ALIGNED
    if votes and all(v != want for v in votes):
        return COUNTER
    return MIXED


def adjust_confidence(confidence: float, agreement: str, rule: HTFRule = HTFRule()) -> float:
    """Signal confidence after the HTF agreement adjustment, clipped to [0, 1]."""
    delta = {
        ALIGNED: rule.aligned_bonus,
        MIXED: rule.mixed_adjustment,
        COUNTER: -rule.counter_penalty,
    }[agreement]
    return float(min(1.0, max(0.0, confidence + delta)))


@dataclass(frozen=True)
class HTFAlignment:
    """Per signal: ``alignment`` (timeframe -> BULLISH/BEARISH/NEUTRAL), ``agreement``
    and the HTF bar open time used per timeframe (ns, or None when no bar had closed)."""

    alignment: list[dict[str, str]]
    agreement: list[str]
    htf_bar_open_ns: list[dict[str, int | None]]


def align_signals(
    htf_panels: Mapping[str, BarPanel],
    symbols: list[str],
    times_ns: ArrayLike,
    directions: ArrayLike,
    rule: HTFRule = HTFRule(),
) -> HTFAlignment:
    """HTF alignment for many signals at once.

    ``times_ns[i]`` is signal ``i``'s time (its signal bar close, ns UTC) and only HTF bars
    closed at or before it are used. The HTF trend is computed once per panel and gathered.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    dirs = np.asarray(directions)
    n = len(times)
    alignment: list[dict[str, str]] = [{} for _ in range(n)]
    used: list[dict[str, int | None]] = [{} for _ in range(n)]
    for tf, panel in htf_panels.items():
        trend = htf_trend(panel.bars, rule)
        index = panel.row_of()
        rows = np.array([index.get(s, -1) for s in symbols], dtype=np.int64)
        known = rows >= 0
        bar = np.full(n, -1, dtype=np.int64)
        if known.any():
            bar[known] = last_closed_bar(panel, rows[known], times[known])
        ok = bar >= 0
        state = np.zeros(n, dtype=np.int8)
        state[ok] = trend[rows[ok], bar[ok]]
        opened = np.full(n, -1, dtype=np.int64)
        opened[ok] = panel.open_time[rows[ok], bar[ok]]
        for i in range(n):
            alignment[i][tf] = _TREND_NAMES[int(state[i])]
            used[i][tf] = int(opened[i]) if ok[i] else None
    agreement = [htf_agreement(int(dirs[i]), alignment[i]) for i in range(n)]
    return HTFAlignment(alignment, agreement, used)
