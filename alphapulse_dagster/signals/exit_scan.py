"""The exit rule of ``trade_management`` on a window of bars, vectorised over trades.

Everything here is in *favourable units*: LONG prices as they are, SHORT prices negated,
so "up" is always towards the target and one formula serves both directions. A window is
(N trades, K bars) from each trade's first bar on; cells outside the data hold
``high = -inf``, ``low = +inf`` and a NaN open and close, so they never trigger anything.
The rule itself is stated once, in ``trade_management``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alphapulse_dagster.market.bar_series import BarSeries

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

NONE, STOP, BREAKEVEN, TARGET, TIME = range(5)  # exit reason codes


@dataclass(frozen=True)
class Levels:
    """Per trade, in favourable units: ``entry`` (the fill price), ``stop``, and the first
    and last targets (equal with one target); ``sign`` +1 LONG / -1 SHORT."""

    sign: IntArray
    entry: FloatArray
    stop: FloatArray
    first_target: FloatArray
    last_target: FloatArray

    def take(self, idx: IntArray) -> Levels:
        return Levels(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Window:
    """(N, K) bars in favourable units. ``high`` and ``low`` are whole arrays (the scans
    read every cell); the open and the close are read per cell (:meth:`open_at`,
    :meth:`close_at`): a rule needs them on one bar per trade, and building them whole was
    half the cost of a window. The cells come from ``series`` at ``safe`` where ``valid``."""

    high: FloatArray
    low: FloatArray
    series: BarSeries
    safe: IntArray
    valid: BoolArray
    sign: IntArray

    def open_at(self, rows: IntArray, cols: IntArray) -> FloatArray:
        return self._at(self.series.open, rows, cols)

    def close_at(self, rows: IntArray, cols: IntArray) -> FloatArray:
        return self._at(self.series.close, rows, cols)

    def _at(self, prices: FloatArray, rows: IntArray, cols: IntArray) -> FloatArray:
        if len(self.series) == 0:
            return np.full(len(rows), np.nan)
        ok = self.valid[rows, cols]
        return np.where(ok, self.sign[rows] * prices[self.safe[rows, cols]], np.nan)


def window_of(series: BarSeries, idx: IntArray, valid: BoolArray, sign: IntArray) -> Window:
    """The bars at ``idx`` (N, K) where ``valid``, turned into favourable units."""
    if len(series) == 0:
        inf = np.full(idx.shape, np.inf)
        return Window(-inf, inf, series, idx, valid, sign)
    safe = np.clip(idx, 0, len(series) - 1)
    long = (sign > 0)[:, None]
    hi, lo = series.high[safe], series.low[safe]
    return Window(
        high=np.where(valid, np.where(long, hi, -lo), -np.inf),
        low=np.where(valid, np.where(long, lo, -hi), np.inf),
        series=series,
        safe=safe,
        valid=valid,
        sign=sign,
    )


def first_true(hit: BoolArray, none: int) -> IntArray:
    """Column of the first True per row, ``none`` where there is none."""
    idx = hit.argmax(axis=1)
    return np.where(hit[np.arange(len(hit)), idx], idx, none).astype(np.int64)


@dataclass
class Scan:
    exit_k: IntArray  # column of the exit bar, K if none
    reason: NDArray[np.int8]
    price: FloatArray  # exit price in favourable units
    ambiguous: BoolArray
    first_t1: IntArray  # column where the first target traded (-1: before column 0)
    t1_first: BoolArray  # the first target traded on a bar before the stop's


def scan_exits(bars: Window, levels: Levels, t1_done: BoolArray, gap_ok: BoolArray) -> Scan:
    """The exit rule on ``bars`` from the fill bar (column 0) on. ``t1_done``: the first
    target traded before column 0 (the stop is already at the entry); ``gap_ok`` (N, K):
    the bar's open is after the fill, so a gap through a stop fills at the open."""
    e, s0 = levels.entry, levels.stop
    n, k = bars.high.shape
    cols = np.arange(k)[None, :]
    first_t1 = np.where(t1_done, -1, first_true(bars.high >= levels.first_target[:, None], k))
    first_tl = first_true(bars.high >= levels.last_target[:, None], k)
    first_s0 = first_true(bars.low <= s0[:, None], k)
    first_be = first_true((bars.low <= e[:, None]) & (cols > first_t1[:, None]), k)
    stop_first = first_s0 <= first_t1
    stop_k = np.where(stop_first, first_s0, first_be)
    exit_k = np.minimum(stop_k, first_tl)
    has = exit_k < k
    is_stop_side = has & (stop_k <= first_tl)
    reason = np.full(n, NONE, dtype=np.int8)
    reason[is_stop_side] = np.where(stop_first, STOP, BREAKEVEN)[is_stop_side]
    reason[has & ~is_stop_side] = TARGET
    ambiguous = has & ((stop_k == first_tl) | (is_stop_side & stop_first & (first_s0 == first_t1)))
    rows = np.arange(n)
    kk = np.minimum(exit_k, k - 1)
    opened = bars.open_at(rows, kk)
    level = np.where(reason == STOP, s0, e)
    gapped = gap_ok[rows, kk] & np.isfinite(opened) & (opened < level)
    stop_price = np.where(gapped, opened, level)
    price = np.where(reason == TARGET, levels.last_target, np.where(has, stop_price, np.nan))
    t1_first = (first_t1 < first_s0) & (first_t1 < k)
    return Scan(exit_k, reason, price, ambiguous, first_t1, t1_first)
