"""Confirmed swing pivots and "the latest event as of each bar", on bar arrays.

Arrays are ``(n_bars,)`` or ``(n_symbols, n_bars)`` (time on the last axis, oldest bar
first), prices in the input's units. A pivot is *confirmed* ``k`` bars after its bar and
is placed at the bar where it becomes known, so nothing here looks ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from alphapulse_dagster.market.indicators import as_2d, check_period

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class SwingPivots:
    """Confirmed swing pivots, indexed by the bar where each pivot becomes *known*.

    ``high[j]`` is the price of a pivot high at bar ``j - k`` (NaN if bar ``j - k`` is not
    one), known at the close of bar ``j``; ``high_bar[j]`` is that pivot's bar index
    (``-1`` where there is none). Same for lows. Nothing here looks past bar ``j``.
    """

    high: FloatArray
    high_bar: IntArray
    low: FloatArray
    low_bar: IntArray
    confirmation_bars: int


def swing_pivots(high: ArrayLike, low: ArrayLike, confirmation_bars: int = 3) -> SwingPivots:
    """Swing highs/lows with ``k = confirmation_bars`` bars on each side.

    Bar ``p`` is a pivot high when ``high[p]`` is strictly above the ``k`` highs before it
    and at least every one of the ``k`` highs after it (so of two equal tops the first
    counts once); pivot lows mirror it. It is known only at bar ``p + k``, and the arrays
    put it there. Windows touching NaN yield no pivot.
    """
    k = confirmation_bars
    check_period(k)
    (h, lo), was_1d = as_2d(high, low)
    n_bars = h.shape[1]
    out_high = np.full(h.shape, np.nan)
    out_low = np.full(h.shape, np.nan)
    high_bar = np.full(h.shape, -1, dtype=np.int64)
    low_bar = np.full(h.shape, -1, dtype=np.int64)
    if n_bars >= 2 * k + 1:
        hw = np.lib.stride_tricks.sliding_window_view(h, 2 * k + 1, axis=1)
        lw = np.lib.stride_tricks.sliding_window_view(lo, 2 * k + 1, axis=1)
        centre_h, centre_l = hw[:, :, k], lw[:, :, k]
        with np.errstate(invalid="ignore"):
            is_high = (centre_h > hw[:, :, :k].max(axis=2)) & (
                centre_h >= hw[:, :, k + 1 :].max(axis=2)
            )
            is_low = (centre_l < lw[:, :, :k].min(axis=2)) & (
                centre_l <= lw[:, :, k + 1 :].min(axis=2)
            )
        # Window w is centred on bar w + k and fully known at bar w + 2k.
        pivot_bar = np.arange(n_bars - 2 * k)[np.newaxis, :] + k
        known = slice(2 * k, n_bars)
        out_high[:, known] = np.where(is_high, centre_h, np.nan)
        out_low[:, known] = np.where(is_low, centre_l, np.nan)
        high_bar[:, known] = np.where(is_high, pivot_bar, -1)
        low_bar[:, known] = np.where(is_low, pivot_bar, -1)
    if was_1d:
        return SwingPivots(out_high[0], high_bar[0], out_low[0], low_bar[0], k)
    return SwingPivots(out_high, high_bar, out_low, low_bar, k)


def forward_fill_last(values: FloatArray, bars: IntArray) -> tuple[FloatArray, IntArray]:
    """As of each bar, the latest event value and its bar index (``-1``/NaN before any).

    ``values``/``bars`` are event arrays such as :class:`SwingPivots` ``high``/``high_bar``
    (NaN / ``-1`` where no event). Causal: bar ``j`` sees events indexed ``<= j`` only.
    """
    v = np.asarray(values, dtype=np.float64)
    b = np.asarray(bars, dtype=np.int64)
    has = b >= 0
    cols = np.broadcast_to(np.arange(v.shape[-1]), v.shape)
    last_col = np.maximum.accumulate(np.where(has, cols, -1), axis=-1)
    safe = np.maximum(last_col, 0)
    latest_v = np.where(last_col >= 0, np.take_along_axis(v, safe, axis=-1), np.nan)
    latest_b = np.where(last_col >= 0, np.take_along_axis(b, safe, axis=-1), -1)
    return latest_v, latest_b
