"""Key price levels on entry-timeframe bars: swing legs, EMAs and order blocks.

All arrays are ``(n_symbols, n_bars)`` in price units and causal: the value at bar ``j``
is known at the close of bar ``j``. Swings are *confirmed* pivots (known ``k`` bars after
the pivot bar), so nothing here looks ahead. :func:`levels_at` gathers the levels for many
``(symbol row, bar)`` queries at once; direction +1 is LONG (levels below the market),
-1 SHORT (mirrored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alphapulse_dagster.market import indicators as ind
from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.market.swings import forward_fill_last, swing_pivots

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: An order block is the last opposite candle at most this many bars before the
#: structure-breaking bar; older candles are not "before the displacement".
ORDER_BLOCK_MAX_AGE_BARS = 10


@dataclass(frozen=True)
class EntryFeatures:
    """Precomputed entry-timeframe features of a panel (see module docstring)."""

    atr: FloatArray
    emas: dict[int, FloatArray]
    swing_high: FloatArray  # latest confirmed swing high price as of bar j
    swing_high_bar: IntArray
    swing_low: FloatArray
    swing_low_bar: IntArray
    low_before: FloatArray  # latest pivot low with pivot bar <= p (indexed by pivot bar p)
    high_before: FloatArray
    bull_ob_top: FloatArray  # at the structure-break bar, NaN elsewhere
    bull_ob_bottom: FloatArray
    bear_ob_top: FloatArray
    bear_ob_bottom: FloatArray
    valid_count: IntArray  # number of bars with a finite close up to and including j
    bad_count: IntArray  # cumulative count of corrupted bars (see ``corrupted_bars``)


def corrupted_bars(bars: Bars) -> NDArray[np.bool_]:
    """Bars after a symbol's first bar that are not sane OHLC: non-finite or non-positive
    prices, high below low, or open/close outside [low, high]. Left padding is not bad."""
    o, h, lo, c = bars.open, bars.high, bars.low, bars.close
    started = np.cumsum(np.isfinite(c), axis=1) > 0
    with np.errstate(invalid="ignore"):
        sane = (
            np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & (lo > 0)
            & (h >= lo) & (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c))
        )  # fmt: skip
    return started & ~sane


def _by_pivot_bar(price: FloatArray, bar: IntArray) -> tuple[FloatArray, IntArray]:
    """Move pivot events from their confirmation bar to their pivot bar, then forward-fill."""
    out = np.full(price.shape, np.nan)
    out_bar = np.full(price.shape, -1, dtype=np.int64)
    rows, cols = np.nonzero(bar >= 0)
    out[rows, bar[rows, cols]] = price[rows, cols]
    out_bar[rows, bar[rows, cols]] = bar[rows, cols]
    filled, _ = forward_fill_last(out, out_bar)
    return filled, out_bar


def _order_blocks(bars: Bars, level: FloatArray, breaks_up: bool) -> tuple[FloatArray, FloatArray]:
    """Order blocks formed at structure breaks: (top, bottom) at the break bar, else NaN.

    Bullish (``breaks_up``): bar ``i`` closes above the latest confirmed swing high known at
    bar ``i - 1`` while bar ``i - 1`` had not; the block is the last bearish candle
    (close < open) before bar ``i``, if it is at most ``ORDER_BLOCK_MAX_AGE_BARS`` old.
    Bearish mirrors it with the swing low and the last bullish candle.
    """
    o, h, lo, c = bars.open, bars.high, bars.low, bars.close
    n_bars = c.shape[1]
    prev_level = ind.lag(level, 1)
    prev_close = ind.lag(c, 1)
    with np.errstate(invalid="ignore"):
        if breaks_up:
            brk = (c > prev_level) & (prev_close <= prev_level)
            opposite = c < o
        else:
            brk = (c < prev_level) & (prev_close >= prev_level)
            opposite = c > o
    cols = np.broadcast_to(np.arange(n_bars), c.shape)
    last_opposite = np.maximum.accumulate(np.where(opposite, cols, -1), axis=1)
    candle = np.full(c.shape, -1, dtype=np.int64)
    candle[:, 1:] = last_opposite[:, :-1]  # strictly before the break bar
    ok = brk & (candle >= 0) & (cols - candle <= ORDER_BLOCK_MAX_AGE_BARS)
    safe = np.maximum(candle, 0)
    top = np.where(ok, np.take_along_axis(h, safe, axis=1), np.nan)
    bottom = np.where(ok, np.take_along_axis(lo, safe, axis=1), np.nan)
    return top, bottom


def entry_features(
    bars: Bars, ema_periods: tuple[int, ...], confirmation_bars: int, atr_period: int = 14
) -> EntryFeatures:
    """Compute every causal feature refinement needs, once per panel (vectorised)."""
    piv = swing_pivots(bars.high, bars.low, confirmation_bars)
    sh, sh_bar = forward_fill_last(piv.high, piv.high_bar)
    sl, sl_bar = forward_fill_last(piv.low, piv.low_bar)
    low_before, _ = _by_pivot_bar(piv.low, piv.low_bar)
    high_before, _ = _by_pivot_bar(piv.high, piv.high_bar)
    bull_top, bull_bottom = _order_blocks(bars, sh, breaks_up=True)
    bear_top, bear_bottom = _order_blocks(bars, sl, breaks_up=False)
    return EntryFeatures(
        atr=ind.atr(bars.high, bars.low, bars.close, atr_period),
        emas={p: ind.ema(bars.close, p) for p in ema_periods},
        swing_high=sh,
        swing_high_bar=sh_bar,
        swing_low=sl,
        swing_low_bar=sl_bar,
        low_before=low_before,
        high_before=high_before,
        bull_ob_top=bull_top,
        bull_ob_bottom=bull_bottom,
        bear_ob_top=bear_top,
        bear_ob_bottom=bear_bottom,
        valid_count=np.cumsum(np.isfinite(bars.close), axis=1),
        bad_count=np.cumsum(corrupted_bars(bars), axis=1),
    )


@dataclass(frozen=True)
class SwingLegs:
    """Per query: the latest confirmed swing leg in the signal's direction (price)."""

    start: FloatArray  # LONG: the leg's low; SHORT: its high
    end: FloatArray  # LONG: the leg's high; SHORT: its low


def swing_legs(f: EntryFeatures, rows: IntArray, bars_: IntArray, sign: IntArray) -> SwingLegs:
    """LONG: latest confirmed swing high H and the latest pivot low before it, L (leg L->H).

    The pivot low's bar precedes H's bar, so it was confirmed before H was: known at ``j``.
    SHORT mirrors it (latest confirmed swing low and the pivot high before it).
    """
    long = sign > 0
    end = np.where(long, f.swing_high[rows, bars_], f.swing_low[rows, bars_])
    end_bar = np.where(long, f.swing_high_bar[rows, bars_], f.swing_low_bar[rows, bars_])
    before = np.maximum(end_bar - 1, 0)
    start = np.where(long, f.low_before[rows, before], f.high_before[rows, before])
    start = np.where(end_bar >= 1, start, np.nan)
    with np.errstate(invalid="ignore"):
        proper = np.where(long, start < end, start > end)
    return SwingLegs(np.where(proper, start, np.nan), np.where(proper, end, np.nan))


@dataclass(frozen=True)
class OrderBlocks:
    """Per query: the latest unmitigated order block in the signal's direction (price)."""

    proximal: FloatArray  # LONG: top of the bullish block; SHORT: bottom of the bearish one
    distal: FloatArray
    formed_bar: IntArray


def unmitigated_order_blocks(
    f: EntryFeatures,
    bars: Bars,
    rows: IntArray,
    bars_: IntArray,
    sign: IntArray,
    market: FloatArray,
    lookback: int,
) -> OrderBlocks:
    """Latest order block formed in the last ``lookback`` bars up to ``j`` that price has
    not traded back into since its structure break (LONG: every later low > its top) and
    whose proximal edge is on the entry side of the market price."""
    m = len(rows)
    cols = bars_[:, None] - np.arange(lookback - 1, -1, -1)[None, :]  # oldest .. j
    in_range = cols >= 0
    safe = np.maximum(cols, 0)
    r = rows[:, None]
    long = (sign > 0)[:, None]
    proximal = np.where(long, f.bull_ob_top[r, safe], f.bear_ob_bottom[r, safe])
    distal = np.where(long, f.bull_ob_bottom[r, safe], f.bear_ob_top[r, safe])
    # Extreme of the bars *after* each window position (towards the entry side).
    low_w = np.where(in_range, bars.low[r, safe], np.inf)
    high_w = np.where(in_range, bars.high[r, safe], -np.inf)
    after_low = np.full((m, lookback), np.inf)
    after_high = np.full((m, lookback), -np.inf)
    if lookback > 1:
        after_low[:, :-1] = np.minimum.accumulate(low_w[:, ::-1], axis=1)[:, ::-1][:, 1:]
        after_high[:, :-1] = np.maximum.accumulate(high_w[:, ::-1], axis=1)[:, ::-1][:, 1:]
    mk = market[:, None]
    with np.errstate(invalid="ignore"):
        untouched = np.where(long, after_low > proximal, after_high < proximal)
        entry_side = np.where(long, proximal < mk, proximal > mk)
    ok = in_range & np.isfinite(proximal) & untouched & entry_side
    has = ok.any(axis=1)
    latest = lookback - 1 - np.argmax(ok[:, ::-1], axis=1)
    pick = np.arange(m)
    return OrderBlocks(
        np.where(has, proximal[pick, latest], np.nan),
        np.where(has, distal[pick, latest], np.nan),
        np.where(has, cols[pick, latest], -1).astype(np.int64),
    )
