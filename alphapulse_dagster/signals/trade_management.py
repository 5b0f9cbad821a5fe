"""The one trade-management rule: when an entry fills and how its trade exits.

Both the lifecycle of stored MTF signals (``mtf_lifecycle``) and the outcomes
(``analytics/outcomes``) call :func:`manage_trades`; nothing else decides a fill or an exit.
Vectorised over trades and bars (numpy); no Python loop per bar.

Times are epoch nanoseconds (UTC); bars are labelled by their OPEN time and close at
``open + bar length``; prices are in quote currency, R in multiples of |entry - stop|.

**Fill.** A trade is placed at ``placed_at`` (an MTF signal: its signal bar's close).

- A market entry fills at ``placed_at`` at its entry price (the signal bar's close): it
  never expires, and every bar opening at or after ``placed_at`` is after the fill.
- A limit entry is valid until ``expires_at`` (signal time + ``entry_valid_bars`` entry-
  timeframe bars, clock time: the one definition of the fill window, also stored as
  ``ai_signals_mtf.expires_at``). It fills on the first bar opening at or after
  ``placed_at`` and *closing* by ``expires_at`` that trades through it (LONG: low ≤
  entry; SHORT: high ≥ entry). A weekend or an outage inside the window shortens it; it
  never stretches it. None by ``expires_at`` ⇒ ``NOT_FILLED``, decided only once the data
  reach ``expires_at``. It fills at its level, or at the bar's open when the bar opened
  beyond it (LONG: open < entry: the better price a resting limit gets on a gap); that
  fill price is then the trade's entry (break-even stop, R, MFE, MAE).

**Exit**, from the fill bar on: the stop ⇒ ``STOP``; the last target ⇒ ``TARGET``; once the
first target has traded (on an earlier bar) the stop moves to the entry and a later touch
⇒ ``BREAKEVEN``; a trade still open at ``filled + max_holding_bars`` bars (clock time)
exits at the close of the last bar by then ⇒ ``TIME``. Stops and break-even fill at the
level, or at the bar's open when the bar gapped through it (the worse price); targets fill
at the level.

**The fill bar** (a limit filled at its level; one filled at the bar's open is like a market
entry: all of its bar came after): only what surely came after the fill counts. The adverse
extreme of that bar (LONG: its low) is reached at or after the fill, so a stop on the fill
bar counts; its favourable extreme may have come before the fill, so on the fill bar the
favourable side is the bar's close: a target counts there only if the bar closed beyond
it. This is the conservative reading; it is also used for MFE.

**First target hit** (a win, SPEC §17): the first target traded on a bar before the stop's,
by the rules above (a bar touching both counts as the stop unless finer bars order them).

**Ambiguity.** A bar that touches both the stop (or break-even) and the last target, or
both the stop and the first target, has no known order. It is resolved on finer candles
when they cover the bar (the same rule, run on them with the state at the bar's open);
otherwise it counts as the stop and the trade is flagged ``ambiguous``.

**Look-ahead.** Only bars closed by ``horizon`` (the caller's as-of time, capped at the
data it has) are looked at: a ``CLOSED`` or ``NOT_FILLED`` result never changes when later
bars arrive, and an open one equals the result computed on the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from alphapulse_dagster.market.bar_series import BarSeries, to_ns
from alphapulse_dagster.signals.exit_scan import BREAKEVEN as _BE
from alphapulse_dagster.signals.exit_scan import NONE as _NONE
from alphapulse_dagster.signals.exit_scan import TARGET as _TARGET
from alphapulse_dagster.signals.exit_scan import TIME as _TIME
from alphapulse_dagster.signals.exit_scan import (
    BoolArray,
    FloatArray,
    IntArray,
    Levels,
    first_true,
    scan_exits,
    window_of,
)
from alphapulse_dagster.signals.same_bar_order import ExitBars, order_on_finer

__all__ = ["BarSeries", "TradeResults", "TradeRule", "Trades", "manage_trades", "to_ns"]

OPEN, CLOSED, NOT_FILLED = "OPEN", "CLOSED", "NOT_FILLED"
STOP, BREAKEVEN, TARGET, TIME = "STOP", "BREAKEVEN", "TARGET", "TIME"
EXIT_REASONS = (None, STOP, BREAKEVEN, TARGET, TIME)  # index = reason code
NO_TIME = np.iinfo(np.int64).min  # "no such time" in the ns arrays
MARKET_ENTRY = "MARKET_ENTRY"
_CHUNK = 16_384  # trades per vectorised block (bounds memory at ~100 MB)


@dataclass(frozen=True)
class TradeRule:
    """``entry_valid_bars``: how many entry-timeframe bars a limit stays valid (sets
    ``expires_at``); ``max_holding_bars``: the time exit, in bars of the trade's timeframe."""

    entry_valid_bars: int = 4
    max_holding_bars: int = 96


@dataclass(frozen=True)
class Trades:
    """N trades on one instrument. ``sign`` +1 LONG / -1 SHORT; ``first_target`` and
    ``last_target`` are the nearest and the farthest target (equal with one target);
    ``at_market`` trades fill at ``placed_at``; ``expires_at`` matters for limits only."""

    sign: IntArray
    entry: FloatArray
    stop: FloatArray
    first_target: FloatArray
    last_target: FloatArray
    placed_at: IntArray
    expires_at: IntArray
    at_market: BoolArray

    def __len__(self) -> int:
        return len(self.sign)

    def take(self, idx: IntArray) -> Trades:
        return Trades(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class TradeResults:
    """Per trade: ``status`` (OPEN / CLOSED / NOT_FILLED); ``filled_at`` (ns: the fill bar's
    open, or ``placed_at`` at market; ``NO_TIME`` if unfilled); ``exit_at`` (ns: the exit
    bar's close); ``exit_reason`` code (index into ``EXIT_REASONS``); ``r_multiple``;
    MFE / MAE in price (≥ 0) and R; ``bars_to_mfe`` and ``bars_held`` counted in bars from
    the fill bar inclusive; ``ambiguous`` (same-bar stop/target left unresolved);
    ``fill_price`` (the entry, or the open of a bar that gapped through a limit; NaN if
    unfilled); ``first_target_hit`` (the first target traded before the stop).

    When each was known (ns, bar closes): ``fill_known_at`` (the fill bar's close, or
    ``placed_at`` at market) and ``decided_at`` (the close of the bar that made the result
    CLOSED or NOT_FILLED). As of any earlier horizon h the trade was OPEN, filled iff
    ``fill_known_at <= h``: the whole lifecycle over a range from one call."""

    status: NDArray[np.object_]
    filled_at: IntArray
    exit_at: IntArray
    exit_price: FloatArray
    exit_reason: NDArray[np.int8]
    r_multiple: FloatArray
    mfe_price: FloatArray
    mae_price: FloatArray
    mfe_r: FloatArray
    mae_r: FloatArray
    bars_to_mfe: IntArray
    bars_held: IntArray
    ambiguous: BoolArray
    fill_price: FloatArray
    first_target_hit: BoolArray
    fill_known_at: IntArray
    decided_at: IntArray

    def reason(self, i: int) -> str | None:
        return EXIT_REASONS[int(self.exit_reason[i])]


def trades_of_signals(signals: pd.DataFrame) -> Trades:
    """Trades from stored signals (columns of ``ai_signals_mtf``: direction, entry_price,
    stop_loss, take_profits, timestamp, expires_at, entry_strategy). ``MARKET_ENTRY``
    signals fill at the signal's close; every other entry is a limit."""
    sign = np.where(signals["direction"].to_numpy() == "LONG", 1, -1).astype(np.int64)
    targets = signals["take_profits"].tolist()
    return Trades(
        sign=sign,
        entry=signals["entry_price"].to_numpy(np.float64),
        stop=signals["stop_loss"].to_numpy(np.float64),
        first_target=np.array([float(t[0]) for t in targets], dtype=np.float64),
        last_target=np.array([float(t[-1]) for t in targets], dtype=np.float64),
        placed_at=to_ns(signals["timestamp"]),
        expires_at=to_ns(signals["expires_at"]),
        at_market=(signals["entry_strategy"] == MARKET_ENTRY).to_numpy(),
    )


def manage_trades(
    trades: Trades,
    bars: BarSeries,
    rule: TradeRule,
    horizon_ns: int,
    finer: BarSeries | None = None,
) -> TradeResults:
    """Fill and exit of every trade on ``bars`` seen up to ``horizon_ns`` (the module
    docstring is the rule). ``finer``: bars of a finer timeframe of the same instrument,
    used only to order the stop and a target touched on one bar."""
    blocks = [np.arange(i, min(i + _CHUNK, len(trades))) for i in range(0, len(trades), _CHUNK)]
    parts = [
        _manage_block(trades.take(b), bars, rule, horizon_ns, finer)
        for b in blocks or [np.arange(0)]
    ]
    return TradeResults(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in TradeResults.__dataclass_fields__)
    )


def _manage_block(
    t: Trades, bars: BarSeries, rule: TradeRule, horizon_ns: int, finer: BarSeries | None
) -> TradeResults:
    n, bar_ns = len(t), bars.bar_ns
    close_ns = bars.close_ns
    visible = int(np.searchsorted(close_ns, horizon_ns, side="right"))
    horizon = min(horizon_ns, int(close_ns[visible - 1])) if visible else NO_TIME
    sign = t.sign.astype(np.int64)
    e, s0 = sign * t.entry, sign * t.stop
    t1, tl = sign * t.first_target, sign * t.last_target
    start = np.searchsorted(bars.open_ns, t.placed_at, side="left").astype(np.int64)
    rows = np.arange(n)

    # --- fill ---------------------------------------------------------------------------
    width = max(1, int(np.max((t.expires_at - t.placed_at) // bar_ns, initial=0)) + 1)
    idx = start[:, None] + np.arange(width)[None, :]
    in_data = idx < visible
    safe = np.clip(idx, 0, max(len(bars) - 1, 0))
    valid = in_data & (close_ns[safe] <= t.expires_at[:, None]) if len(bars) else in_data
    touched = window_of(bars, idx, valid, sign).low <= e[:, None]
    first = first_true(touched, width)
    limit_filled = ~t.at_market & (first < width)
    filled = t.at_market | limit_filled
    fill_idx = np.where(t.at_market, start, start + first)
    last = max(len(bars) - 1, 0)
    fill_open = bars.open_ns[np.clip(fill_idx, 0, last)] if len(bars) else np.full(n, NO_TIME)
    filled_at = np.where(
        t.at_market, t.placed_at, np.where(limit_filled, fill_open, NO_TIME)
    ).astype(np.int64)
    not_filled = ~filled & (horizon >= t.expires_at)
    # a limit on a bar that opened beyond it fills at that open: the trade's entry from here
    opened = sign * bars.open[np.clip(fill_idx, 0, last)] if len(bars) else np.full(n, np.nan)
    gapped = limit_filled & (opened < e)
    limit = e
    e = np.where(gapped, opened, e)

    # --- exit ---------------------------------------------------------------------------
    hold = rule.max_holding_bars
    deadline = np.where(filled, filled_at, 0) + hold * bar_ns
    idx = fill_idx[:, None] + np.arange(hold)[None, :]
    safe = np.clip(idx, 0, max(len(bars) - 1, 0))
    valid = filled[:, None] & (idx < visible)
    if len(bars):
        valid &= close_ns[safe] <= deadline[:, None]
    w = window_of(bars, idx, valid, sign)
    at_level = limit_filled & ~gapped
    limit_col0 = at_level[:, None] & (np.arange(hold)[None, :] == 0)
    fh = w.high.copy()  # on the fill bar of a limit filled at its level: its close
    col0 = np.zeros(n, np.int64)
    fh[:, 0] = np.where(at_level, np.maximum(e, w.close_at(rows, col0)), fh[:, 0])
    fl = w.low
    levels = Levels(sign, e, s0, t1, tl)
    scan = scan_exits(replace(w, high=fh), levels, np.zeros(n, bool), ~limit_col0)
    exit_k, reason, price, ambiguous = scan.exit_k, scan.reason, scan.price, scan.ambiguous
    exit_close = close_ns[np.clip(fill_idx + exit_k, 0, last)] if len(bars) else NO_TIME
    exit_at = np.where(exit_k < hold, exit_close, NO_TIME)

    if finer is not None and len(finer) and ambiguous.any():
        which = np.flatnonzero(ambiguous)
        exit_bars = ExitBars(
            open_ns=bars.open_ns[fill_idx[which] + exit_k[which]],
            on_fill_bar=(at_level & (exit_k == 0))[which],
            limit=limit[which],
            t1_done=(scan.first_t1 < exit_k)[which],
        )
        for j, (r, p, at) in order_on_finer(exit_bars, bar_ns, finer, levels.take(which)).items():
            i = int(which[j])
            reason[i], price[i], exit_at[i], ambiguous[i] = r, p, at, False
            scan.t1_first[i] = r in (_TARGET, _BE)

    # time exit: the holding window has passed in the data without another exit
    n_valid = valid.sum(axis=1)
    window_over = filled & (exit_k >= hold) & (horizon >= deadline)
    # decided by the exit bar's close; a time exit or an expiry by the first bar closing
    # at or after its deadline (the bar that lets ``horizon`` reach it)
    decided_at = np.where(
        not_filled,
        _first_close_from(close_ns, t.expires_at),
        np.where(window_over, _first_close_from(close_ns, deadline), exit_close),
    )
    last_k = np.maximum(n_valid - 1, 0)
    last_close = w.close_at(rows, last_k)
    time_exit = window_over
    reason = np.where(time_exit, _TIME, reason).astype(np.int8)
    price = np.where(time_exit, np.where(n_valid > 0, last_close, e), price)
    exit_k = np.where(time_exit, last_k, exit_k)
    if len(bars):
        exit_at = np.where(
            time_exit,
            np.where(n_valid > 0, close_ns[np.clip(fill_idx + last_k, 0, last)], deadline),
            exit_at,
        )
    closed = reason != _NONE

    # --- excursions up to the exit (all bars seen while open) -----------------------------
    upto = np.where(closed, exit_k, hold - 1)
    seen = valid & (np.arange(hold)[None, :] <= upto[:, None])
    best = np.where(seen, fh, -np.inf)
    worst = np.where(seen, fl, np.inf)
    k_best = best.argmax(axis=1)
    any_seen = seen.any(axis=1)
    mfe = np.where(any_seen, np.maximum(best[rows, k_best] - e, 0.0), 0.0)
    mae = np.where(any_seen, np.maximum(e - worst.min(axis=1), 0.0), 0.0)
    risk = np.abs(e - s0)
    with np.errstate(invalid="ignore", divide="ignore"):  # filled at the stop: 0 R, not 0/0
        r_mult = np.where(closed, np.where(price == e, 0.0, (price - e) / risk), np.nan)
        mfe_r, mae_r = mfe / risk, mae / risk
    status = np.where(closed, CLOSED, np.where(not_filled, NOT_FILLED, OPEN)).astype(object)
    held = np.where(closed, exit_k + 1, seen.sum(axis=1))
    return TradeResults(
        status=status,
        filled_at=np.where(filled, filled_at, NO_TIME).astype(np.int64),
        exit_at=np.where(closed, exit_at, NO_TIME).astype(np.int64),
        exit_price=np.where(closed, sign * price, np.nan),
        exit_reason=reason,
        r_multiple=r_mult,
        mfe_price=np.where(filled, mfe, 0.0),
        mae_price=np.where(filled, mae, 0.0),
        mfe_r=np.where(filled, mfe_r, 0.0),
        mae_r=np.where(filled, mae_r, 0.0),
        bars_to_mfe=np.where(filled & (mfe > 0), k_best + 1, 0).astype(np.int64),
        bars_held=np.where(filled, held, 0).astype(np.int64),
        ambiguous=ambiguous & closed,
        fill_price=np.where(filled, sign * e, np.nan),
        first_target_hit=filled & scan.t1_first,
        fill_known_at=np.where(
            t.at_market, t.placed_at, np.where(limit_filled, fill_open + bar_ns, NO_TIME)
        ).astype(np.int64),
        decided_at=np.where(closed | not_filled, decided_at, NO_TIME).astype(np.int64),
    )


def _first_close_from(close_ns: IntArray, at: IntArray) -> IntArray:
    """The close of the first bar closing at or after each ``at`` (NO_TIME if none)."""
    return np.append(close_ns, NO_TIME)[np.searchsorted(close_ns, at)]
