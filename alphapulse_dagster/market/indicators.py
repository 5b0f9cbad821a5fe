"""Technical indicators on bar arrays, following TA-Lib's conventions exactly.

Every function takes price arrays shaped ``(n_bars,)`` or ``(n_symbols, n_bars)`` (time on
the last axis, oldest bar first) and returns arrays of the same shape, in the input's
price units unless stated otherwise. The value at bar ``i`` uses bars ``<= i`` only: every
indicator here is causal, so truncating the future never changes a past value.

Conventions (TA-Lib's defaults, unstable period 0, ``TA_COMPATIBILITY_DEFAULT``):

* ``sma(x, n)``: first value at index ``n - 1``.
* ``ema(x, n)``: ``k = 2 / (n + 1)``, seeded with the SMA of the first ``n`` values, first
  value at index ``n - 1``.
* ``true_range``: undefined at index 0 (no previous close), like ``talib.TRANGE``.
* ``atr(n)``: Wilder smoothing seeded with the mean of the first ``n`` true ranges
  (indices ``1..n``), so the first value is at index ``n``.
* ``rsi(n)``: Wilder averages of gains / losses, first value at index ``n``; 0 to 100.
* ``macd(12, 26, 9)``: TA-Lib seeds the *fast* EMA so that it starts on the same bar as
  the slow EMA (its SMA seed covers bars ``slow - fast .. slow - 1``), so the fast leg is
  not ``ema(x, 12)``. MACD line, signal and histogram are all first defined at index
  ``slow - 1 + signal - 1`` (33 for 12/26/9), exactly where TA-Lib starts.

NaN handling: NaN marks "undefined". Leading NaNs are skipped per symbol, the way the
``talib`` wrapper does it: the indicator is computed as if the series started at the
symbol's first bar where every input is finite (so symbols with different history lengths
can share one left-padded 2-D array). A NaN *inside* a series makes windowed values
(SMA, rolling extremes) NaN while the window covers it, and recursive filters (EMA, ATR, RSI, MACD)
NaN from that bar on -- as in TA-Lib. Trailing NaN padding never affects earlier bars.

Swing pivots (price structure rather than a TA-Lib indicator) live in :mod:`swings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# TA-Lib's TA_IS_ZERO threshold, used by RSI when average gain + loss is ~0.
_TA_EPSILON = 1e-14


def as_2d(*arrays: ArrayLike) -> tuple[list[FloatArray], bool]:
    """Return float64 2-D views ``(n_symbols, n_bars)`` and whether the input was 1-D."""
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    ndim = out[0].ndim
    if ndim not in (1, 2):
        raise ValueError(f"expected a 1-D or 2-D array, got {ndim}-D")
    for a in out[1:]:
        if a.shape != out[0].shape:
            raise ValueError(f"input shapes differ: {out[0].shape} vs {a.shape}")
    if ndim == 1:
        return [a[np.newaxis, :] for a in out], True
    return out, False


def _restore(result: FloatArray, was_1d: bool) -> FloatArray:
    return result[0] if was_1d else result


def _first_valid(*arrays: FloatArray) -> IntArray:
    """Per row, the first column where every array is finite (n_bars if none)."""
    ok = np.ones(arrays[0].shape, dtype=bool)
    for a in arrays:
        ok &= ~np.isnan(a)
    n_bars = arrays[0].shape[1]
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), n_bars)
    return first.astype(np.int64)


def _with_leading_nans_skipped(
    compute: Callable[..., tuple[FloatArray, ...]], *arrays: FloatArray
) -> tuple[FloatArray, ...]:
    """Run ``compute`` on rows shifted so each starts at its first all-finite bar.

    ``compute`` must be causal and take/return 2-D arrays. Rows are shifted left by their
    offset (trailing NaN padding, harmless for a causal computation), computed together
    and shifted back, so the whole batch stays vectorised.
    """
    offset = _first_valid(*arrays)
    if not offset.any():
        return compute(*arrays)
    n_rows, n_bars = arrays[0].shape
    cols = np.arange(n_bars)[np.newaxis, :]
    src = cols + offset[:, np.newaxis]  # aligned[r, j] = x[r, j + offset_r]
    src_ok = src < n_bars
    src_clipped = np.minimum(src, n_bars - 1)
    rows = np.arange(n_rows)[:, np.newaxis]
    shifted = [np.where(src_ok, a[rows, src_clipped], np.nan) for a in arrays]
    results = compute(*shifted)
    back = cols - offset[:, np.newaxis]  # out[r, i] = res[r, i - offset_r]
    back_ok = back >= 0
    back_clipped = np.maximum(back, 0)
    return tuple(np.where(back_ok, res[rows, back_clipped], np.nan) for res in results)


def check_period(period: int, minimum: int = 1) -> None:
    if int(period) != period or period < minimum:
        raise ValueError(f"period must be an integer >= {minimum}, got {period!r}")


# --- windowed and recursive kernels on 2-D arrays without leading NaNs -----------------


def _seed_mean(x: FloatArray, start: int, stop: int) -> FloatArray:
    """Mean of columns ``start..stop-1``, summed left to right like TA-Lib's seed loop.

    Summation order matters for bitwise closeness: the MACD histogram is a small
    difference of large numbers, where one ulp of the seed shows up as 1e-9 relative.
    """
    total = np.zeros(x.shape[0])
    for col in range(start, stop):
        total = total + x[:, col]
    return total / (stop - start)


def _sma_kernel(x: FloatArray, period: int) -> FloatArray:
    out = np.full(x.shape, np.nan)
    if x.shape[1] >= period:
        windows = np.lib.stride_tricks.sliding_window_view(x, period, axis=1)
        out[:, period - 1 :] = windows.sum(axis=2) / period
    return out


def _ema_from(x: FloatArray, seed: FloatArray, seed_index: int, k: float) -> FloatArray:
    """EMA recursion ``prev + k * (x - prev)`` from ``seed`` at ``seed_index`` on."""
    n_rows, n_bars = x.shape
    out_t = np.full((n_bars, n_rows), np.nan)
    if seed_index >= n_bars:
        return out_t.T
    xt = np.ascontiguousarray(x.T)  # time-major: each step is one contiguous row
    prev = seed.copy()
    out_t[seed_index] = prev
    for i in range(seed_index + 1, n_bars):
        prev = _fma(xt[i] - prev, k, prev)
        out_t[i] = prev
    return out_t.T


_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp/Dekker split of a float64


def _fma(a: FloatArray, b: float, c: FloatArray) -> FloatArray:
    """``a * b + c`` with a single rounding, as a fused multiply-add would give.

    TA-Lib's C build contracts ``(x - prev) * k + prev`` into an FMA. Reproducing that
    rounding matters where the output is a small difference of large numbers (the MACD
    signal near a zero crossing), otherwise 1e-9 *relative* agreement is lost. Exact
    product by Dekker's TwoProduct, exact sum by Knuth's TwoSum, then one rounding.
    """
    p = a * b
    t = _SPLITTER * a
    a_hi = t - (t - a)
    a_lo = a - a_hi
    tb = _SPLITTER * b
    b_hi = tb - (tb - b)
    b_lo = b - b_hi
    p_err = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    s = p + c
    bv = s - p
    s_err = (p - (s - bv)) + (c - bv)
    return s + (s_err + p_err)


def _ema_kernel(x: FloatArray, period: int) -> FloatArray:
    if x.shape[1] < period:
        return np.full(x.shape, np.nan)
    seed = _seed_mean(x, 0, period)
    return _ema_from(x, seed, period - 1, 2.0 / (period + 1))


def _true_range_kernel(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    out = np.full(high.shape, np.nan)
    prev_close = close[:, :-1]
    h, lo = high[:, 1:], low[:, 1:]
    out[:, 1:] = np.maximum(h - lo, np.maximum(np.abs(h - prev_close), np.abs(lo - prev_close)))
    return out


def _wilder_from(values: FloatArray, seed: FloatArray, seed_index: int, period: int) -> FloatArray:
    """Wilder smoothing ``(prev * (n - 1) + v) / n`` from ``seed`` at ``seed_index`` on."""
    n_rows, n_bars = values.shape
    out_t = np.full((n_bars, n_rows), np.nan)
    if seed_index >= n_bars:
        return out_t.T
    vt = np.ascontiguousarray(values.T)
    prev = seed.copy()
    out_t[seed_index] = prev
    for i in range(seed_index + 1, n_bars):
        prev = (prev * (period - 1) + vt[i]) / period
        out_t[i] = prev
    return out_t.T


def _atr_kernel(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    tr = _true_range_kernel(high, low, close)
    if period == 1:  # TA-Lib: ATR(1) is the true range itself
        return tr
    if high.shape[1] <= period:
        return np.full(high.shape, np.nan)
    seed = _seed_mean(tr, 1, period + 1)
    return _wilder_from(tr, seed, period, period)


def _rsi_kernel(x: FloatArray, period: int) -> FloatArray:
    n_bars = x.shape[1]
    out = np.full(x.shape, np.nan)
    if n_bars <= period:
        return out
    diff = np.diff(x, axis=1)  # diff[:, i - 1] is the change into bar i
    gain = np.where(diff > 0, diff, 0.0)
    loss = np.where(diff < 0, -diff, 0.0)
    # NaN changes must poison the averages, as in TA-Lib.
    gain[np.isnan(diff)] = np.nan
    loss[np.isnan(diff)] = np.nan
    avg_gain = np.full(x.shape, np.nan)
    avg_loss = np.full(x.shape, np.nan)
    avg_gain[:, 1:] = gain
    avg_loss[:, 1:] = loss
    seed_gain = _seed_mean(gain, 0, period)
    seed_loss = _seed_mean(loss, 0, period)
    avg_gain = _wilder_from(avg_gain, seed_gain, period, period)
    avg_loss = _wilder_from(avg_loss, seed_loss, period, period)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = 100.0 * (avg_gain / total)
    flat = np.abs(total) < _TA_EPSILON
    out[:, period:] = np.where(flat, 0.0, rsi)[:, period:]
    return out


def _macd_kernel(
    x: FloatArray, fast: int, slow: int, signal: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    nan = np.full(x.shape, np.nan)
    start = slow - 1  # first bar of both EMAs
    first_out = start + signal - 1
    if x.shape[1] <= first_out:
        return nan, nan.copy(), nan.copy()
    slow_seed = _seed_mean(x, 0, slow)
    fast_seed = _seed_mean(x, slow - fast, slow)
    ema_slow = _ema_from(x, slow_seed, start, 2.0 / (slow + 1))
    ema_fast = _ema_from(x, fast_seed, start, 2.0 / (fast + 1))
    line = ema_fast - ema_slow
    sig_seed = _seed_mean(line, start, start + signal)
    sig = _ema_from(line, sig_seed, first_out, 2.0 / (signal + 1))
    line[:, :first_out] = np.nan
    return line, sig, line - sig


# --- public API ---------------------------------------------------------------------


def sma(values: ArrayLike, period: int) -> FloatArray:
    """Simple moving average over ``period`` bars (input units); first value at n-1."""
    check_period(period)
    (x,), was_1d = as_2d(values)
    (out,) = _with_leading_nans_skipped(lambda a: (_sma_kernel(a, period),), x)
    return _restore(out, was_1d)


def ema(values: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average, TA-Lib style (SMA seed at index ``period - 1``)."""
    check_period(period)
    (x,), was_1d = as_2d(values)
    (out,) = _with_leading_nans_skipped(lambda a: (_ema_kernel(a, period),), x)
    return _restore(out, was_1d)


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> FloatArray:
    """True range in price units: max(H-L, |H-prevC|, |L-prevC|); NaN at the first bar."""
    (h, lo, c), was_1d = as_2d(high, low, close)
    (out,) = _with_leading_nans_skipped(lambda a, b, c_: (_true_range_kernel(a, b, c_),), h, lo, c)
    return _restore(out, was_1d)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average true range (Wilder) in price units; first value at index ``period``."""
    check_period(period)
    (h, lo, c), was_1d = as_2d(high, low, close)
    (out,) = _with_leading_nans_skipped(lambda a, b, c_: (_atr_kernel(a, b, c_, period),), h, lo, c)
    return _restore(out, was_1d)


def rsi(values: ArrayLike, period: int = 14) -> FloatArray:
    """Relative strength index (Wilder), 0..100; first value at index ``period``."""
    check_period(period)
    (x,), was_1d = as_2d(values)
    (out,) = _with_leading_nans_skipped(lambda a: (_rsi_kernel(a, period),), x)
    return _restore(out, was_1d)


@dataclass(frozen=True)
class MACD:
    """MACD line, signal line and histogram, in price units."""

    macd: FloatArray
    signal: FloatArray
    histogram: FloatArray


def macd(values: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """MACD as ``talib.MACD`` computes it (fast EMA aligned to the slow EMA's start)."""
    for p in (fast, slow, signal):
        check_period(p)
    if slow < fast:  # TA-Lib swaps them too
        fast, slow = slow, fast
    (x,), was_1d = as_2d(values)
    line, sig, hist = _with_leading_nans_skipped(lambda a: _macd_kernel(a, fast, slow, signal), x)
    return MACD(_restore(line, was_1d), _restore(sig, was_1d), _restore(hist, was_1d))


def _rolling_extreme(x: FloatArray, period: int, take_max: bool) -> FloatArray:
    out = np.full(x.shape, np.nan)
    if x.shape[1] >= period:
        windows = np.lib.stride_tricks.sliding_window_view(x, period, axis=1)
        out[:, period - 1 :] = windows.max(axis=2) if take_max else windows.min(axis=2)
    return out


def rolling_max(values: ArrayLike, period: int) -> FloatArray:
    """Highest value of the last ``period`` bars including bar i (``talib.MAX``)."""
    check_period(period)
    (x,), was_1d = as_2d(values)
    (out,) = _with_leading_nans_skipped(lambda a: (_rolling_extreme(a, period, True),), x)
    return _restore(out, was_1d)


def rolling_min(values: ArrayLike, period: int) -> FloatArray:
    """Lowest value of the last ``period`` bars including bar i (``talib.MIN``)."""
    check_period(period)
    (x,), was_1d = as_2d(values)
    (out,) = _with_leading_nans_skipped(lambda a: (_rolling_extreme(a, period, False),), x)
    return _restore(out, was_1d)


def lag(values: ArrayLike, bars: int = 1) -> FloatArray:
    """Value ``bars`` bars ago (NaN for the first ``bars`` bars): a causal shift."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if bars < x.shape[-1]:
        out[..., bars:] = x[..., : x.shape[-1] - bars]
    return out
