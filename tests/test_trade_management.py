"""The one fill-and-exit rule, on hand-built bars whose outcomes are computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse_dagster.market.bar_series import BarSeries, to_ns
from alphapulse_dagster.signals.trade_management import (
    NO_TIME,
    TradeResults,
    TradeRule,
    Trades,
    manage_trades,
)

T = pd.Timestamp("2024-03-01 04:00", tz="UTC")
HOUR = pd.Timedelta(hours=1)
NS = int(to_ns(T)[0])
H_NS = HOUR.value


def series(rows: list[tuple[float, float, float, float]], start=T, step=HOUR) -> BarSeries:
    """(open, high, low, close) per bar, consecutive from ``start``."""
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    opens = to_ns([start + i * step for i in range(len(rows))])
    return BarSeries(opens, o, h, lo, c, int(pd.Timedelta(step).value))


def trade(
    direction: str = "LONG",
    *,
    market: bool = False,
    entry: float = 100.0,
    valid_bars: int = 3,
    placed=T,
) -> Trades:
    s = 1 if direction == "LONG" else -1
    return Trades(
        sign=np.array([s]),
        entry=np.array([entry]),
        stop=np.array([entry - s * 5.0]),
        first_target=np.array([entry + s * 5.0]),
        last_target=np.array([entry + s * 10.0]),
        placed_at=to_ns(placed),
        expires_at=to_ns(placed + valid_bars * HOUR),
        at_market=np.array([market]),
    )


def run(t: Trades, bars: BarSeries, hold: int = 96, horizon=None, finer=None) -> TradeResults:
    end = int(bars.close_ns[-1]) if horizon is None else int(to_ns(horizon)[0])
    return manage_trades(t, bars, TradeRule(3, hold), end, finer)


def at(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def test_stop_first() -> None:
    bars = series([(101, 102, 99.5, 100.5), (100.5, 101, 94, 95.5)])
    r = run(trade(), bars)
    assert (r.status[0], r.reason(0), r.exit_price[0]) == ("CLOSED", "STOP", 95.0)
    assert r.r_multiple[0] == pytest.approx(-1.0)
    assert at(r.filled_at[0]) == T and at(r.exit_at[0]) == T + 2 * HOUR
    # MFE: the fill bar counts by its close (100.5), then the high 101; MAE: the low 94
    assert r.mfe_price[0] == pytest.approx(1.0) and r.mfe_r[0] == pytest.approx(0.2)
    assert r.mae_price[0] == pytest.approx(6.0) and r.mae_r[0] == pytest.approx(1.2)
    assert (r.bars_to_mfe[0], r.bars_held[0], bool(r.ambiguous[0])) == (2, 2, False)


def test_target_first() -> None:
    bars = series([(101, 102, 99.5, 101), (101, 106, 100.5, 105.5), (105.5, 111, 104, 110.5)])
    r = run(trade(), bars)
    assert (r.status[0], r.reason(0), r.exit_price[0]) == ("CLOSED", "TARGET", 110.0)
    assert r.r_multiple[0] == pytest.approx(2.0)
    assert r.mfe_r[0] == pytest.approx(11 / 5) and r.mae_r[0] == pytest.approx(0.1)
    assert (r.bars_to_mfe[0], r.bars_held[0]) == (3, 3)
    assert at(r.exit_at[0]) == T + 3 * HOUR


def test_break_even_after_the_first_target() -> None:
    bars = series([(101, 101, 99, 100.5), (100.5, 106, 101, 103), (103, 104, 99.9, 100)])
    r = run(trade(), bars)
    assert (r.reason(0), r.exit_price[0], r.r_multiple[0]) == ("BREAKEVEN", 100.0, 0.0)
    assert r.bars_held[0] == 3


def test_time_exit_at_the_close_of_the_last_held_bar() -> None:
    bars = series(
        [(101, 101, 99, 100.5), (101, 103, 99, 102), (102, 104, 98, 103), (103, 120, 80, 110)]
    )
    r = run(trade(), bars, hold=3)
    assert (r.status[0], r.reason(0), r.exit_price[0]) == ("CLOSED", "TIME", 103.0)
    assert r.r_multiple[0] == pytest.approx(0.6) and at(r.exit_at[0]) == T + 3 * HOUR
    assert r.bars_held[0] == 3 and r.mae_price[0] == pytest.approx(2.0)  # the 4th bar unseen
    # before the third bar has closed the trade is still open
    assert run(trade(), bars, hold=3, horizon=T + 2 * HOUR).status[0] == "OPEN"


def test_never_filled() -> None:
    bars = series(
        [(103, 104, 101, 102), (102, 103, 100.5, 101), (101, 102, 100.1, 101), (101, 101, 97, 98)]
    )
    r = run(trade(), bars)  # the 4th bar trades through, after the 3-bar window
    assert r.status[0] == "NOT_FILLED" and r.filled_at[0] == NO_TIME and r.bars_held[0] == 0
    assert run(trade(), bars, horizon=T + 2 * HOUR).status[0] == "OPEN"  # window still open


def test_same_bar_stop_and_target_is_the_stop_and_flagged_without_finer_bars() -> None:
    bars = series([(100, 111, 94, 100)])
    r = run(trade(market=True), bars)
    assert (r.reason(0), r.r_multiple[0], bool(r.ambiguous[0])) == ("STOP", -1.0, True)


def test_same_bar_ambiguity_resolved_by_finer_bars() -> None:
    bars = series([(100, 111, 94, 100)])
    q = pd.Timedelta(minutes=15)
    up_first = series(
        [(100, 111, 99, 110.5), (110.5, 110.5, 94, 96), (96, 99, 95, 98), (98, 101, 97, 100)],
        step=q,
    )
    r = run(trade(market=True), bars, finer=up_first)
    assert (r.reason(0), r.exit_price[0], bool(r.ambiguous[0])) == ("TARGET", 110.0, False)
    assert at(r.exit_at[0]) == T + q
    down_first = series(
        [(100, 101, 94, 96), (96, 111, 95.5, 110.5), (110, 110, 99, 100), (100, 101, 99, 100)],
        step=q,
    )
    r = run(trade(market=True), bars, finer=down_first)
    assert (r.reason(0), r.exit_price[0], bool(r.ambiguous[0])) == ("STOP", 95.0, False)
    # the first target, then back through the entry inside the bar: break-even
    be = series(
        [(100, 106, 99.5, 105), (105, 105, 99, 99.5), (99.5, 99.5, 94, 95), (95, 111, 95, 100)],
        step=q,
    )
    single = run(trade(market=True), series([(100, 106, 94, 100)]), finer=be)
    assert (single.reason(0), single.exit_price[0], bool(single.ambiguous[0])) == (
        "BREAKEVEN",
        100.0,
        False,
    )


def test_a_market_entry_fills_at_the_signal_close_and_never_expires() -> None:
    # regression (held-out data): a LONG NO_KEY_LEVEL entry at 1.12688 whose next four lows
    # never came back to it was marked CANCELLED/EXPIRED as if it were a limit
    lows = [1.12689, 1.12772, 1.12746, 1.12840]
    bars = series([(lo + 0.0005, lo + 0.001, lo, lo + 0.0005) for lo in lows])
    t = Trades(
        np.array([1]), np.array([1.12688]), np.array([1.12288]), np.array([1.13088]),
        np.array([1.13488]), to_ns(T), to_ns(T + 4 * HOUR), np.array([True]),
    )  # fmt: skip
    r = manage_trades(t, bars, TradeRule(4, 96), int(bars.close_ns[-1]))
    assert r.status[0] == "OPEN" and at(r.filled_at[0]) == T
    assert r.bars_held[0] == 4 and r.mae_price[0] == 0.0


def test_the_fill_window_is_clock_time_not_a_bar_count() -> None:
    # regression: a Friday 20:00 limit (expires Saturday 00:00) filled on Sunday 22:00
    # because the window counted the next four bars present, across the weekend gap
    friday = pd.Timestamp("2024-03-01 20:00", tz="UTC")  # a Friday
    sunday = pd.Timestamp("2024-03-03 22:00", tz="UTC")
    friday_bars = [(101, 102, 100.5, 101), (101, 102, 100.4, 101)]
    sunday_bars = [(100.5, 101, 99, 100), (100, 101, 99.5, 100.5)]
    opens = [friday, friday + HOUR, sunday, sunday + HOUR]
    rows = friday_bars + sunday_bars
    bars = BarSeries(
        to_ns(opens), *(np.array(c, dtype=float) for c in zip(*rows, strict=True)), H_NS
    )
    t = trade(placed=friday, valid_bars=4)
    assert run(t, bars, horizon=friday + 2 * HOUR).status[0] == "OPEN"  # data end before expiry
    r = run(t, bars)
    assert r.status[0] == "NOT_FILLED" and r.filled_at[0] == NO_TIME


def test_a_target_on_the_fill_bar_counts_only_if_the_bar_closed_beyond_it() -> None:
    # regression: the fill bar's high may come before the fill; it used to count as a hit
    high_first = series([(111, 111, 99, 100.5), (100.5, 102, 99.5, 101)])
    r = run(trade(), high_first)
    assert r.status[0] == "OPEN" and r.mfe_price[0] == pytest.approx(2.0)
    closed_beyond = series([(100.5, 111, 99, 110.5)])
    r = run(trade(), closed_beyond)
    assert (r.reason(0), r.exit_price[0]) == ("TARGET", 110.0)


def test_a_stop_gapped_through_fills_at_the_open() -> None:
    bars = series([(100, 102, 99.5, 101), (93, 94, 92, 93.5)])
    r = run(trade(market=True), bars)
    assert (r.reason(0), r.exit_price[0]) == ("STOP", 93.0)
    assert r.r_multiple[0] == pytest.approx(-1.4)


def test_short_is_the_mirror_image() -> None:
    bars = series([(99, 100.5, 98, 99), (99, 99.5, 94, 94.5), (94.5, 96, 89, 89.5)])
    r = run(trade("SHORT"), bars)
    assert (r.reason(0), r.exit_price[0], r.r_multiple[0]) == ("TARGET", 90.0, 2.0)
    assert r.mae_price[0] == pytest.approx(0.5) and r.mfe_price[0] == pytest.approx(11.0)


def _walk(seed: int, n: int) -> BarSeries:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    spread = np.abs(rng.normal(0, 0.006, (2, n))) * close
    high, low = np.maximum(open_, close) + spread[0], np.minimum(open_, close) - spread[1]
    return BarSeries(NS + np.arange(n) * H_NS, open_, high, low, close, H_NS)


def _random_trades(seed: int, bars: BarSeries, m: int) -> Trades:
    rng = np.random.default_rng(seed + 1)
    at_bar = rng.integers(1, len(bars) - 1, m)
    sign = rng.choice([-1, 1], m)
    ref = bars.close[at_bar - 1]
    entry = ref * (1 - sign * rng.uniform(0, 0.01, m))
    risk = ref * rng.uniform(0.005, 0.02, m)
    return Trades(
        sign, entry, entry - sign * risk, entry + sign * 1.5 * risk, entry + sign * 3 * risk,
        bars.open_ns[at_bar], bars.open_ns[at_bar] + 4 * H_NS, rng.random(m) < 0.3,
    )  # fmt: skip


def _row(r: TradeResults, i: int) -> tuple:
    values = (np.asarray(getattr(r, f)[i]).tolist() for f in TradeResults.__dataclass_fields__)
    return tuple(None if v != v else v for v in values)  # NaN == NaN here


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(5, 190))
def test_later_bars_never_change_a_closed_outcome_and_open_ones_equal_the_prefix(
    seed: int, cut: int
) -> None:
    bars = _walk(seed, 200)
    trades = _random_trades(seed, bars, 60)
    rule = TradeRule(4, 12)
    full = manage_trades(trades, bars, rule, int(bars.close_ns[-1]))
    columns = ("open_ns", "open", "high", "low", "close")
    prefix_bars = BarSeries(*(getattr(bars, f)[:cut] for f in columns), H_NS)
    t_cut = int(prefix_bars.close_ns[-1])
    prefix = manage_trades(trades, prefix_bars, rule, 2**62)
    as_of_cut = manage_trades(trades, bars, rule, t_cut)
    for i in range(len(trades)):
        assert _row(prefix, i) == _row(as_of_cut, i)  # later bars are invisible before t
        if prefix.status[i] != "OPEN":
            assert _row(prefix, i) == _row(full, i)  # decided at t => final


def test_a_limit_on_a_bar_that_opened_beyond_it_fills_at_the_open() -> None:
    # LONG limit 100 (stop 95, targets 105/110); the first bar opens at 98, below the limit:
    # a resting buy fills at 98, the better price. Entry 98, risk 98 - 95 = 3.
    bars = series([(98, 99, 97, 98.5), (98.5, 111, 98, 110.5)])
    r = run(trade(), bars)
    assert r.fill_price[0] == 98.0 and at(r.filled_at[0]) == T
    assert (r.reason(0), r.exit_price[0]) == ("TARGET", 110.0)
    assert r.r_multiple[0] == pytest.approx((110 - 98) / 3)
    # filled at the open, the whole fill bar came after the fill: its high 99 and low 97
    # count; then the high 111
    assert r.mfe_price[0] == pytest.approx(13.0) and r.mae_price[0] == pytest.approx(1.0)
    assert r.mfe_r[0] == pytest.approx(13 / 3) and r.mae_r[0] == pytest.approx(1 / 3)
    # the same fill bar reaching the last target counts (it did not close beyond it)
    r = run(trade(), series([(98, 111, 97, 100)]))
    assert (r.reason(0), r.exit_price[0], r.r_multiple[0]) == ("TARGET", 110.0, 4.0)
    # a limit touched from above (open 101) still fills at its level
    r = run(trade(), series([(101, 102, 99, 101.5)]))
    assert r.fill_price[0] == 100.0


def test_a_short_limit_gapped_through_fills_at_the_open_too() -> None:
    # SHORT limit 100 (stop 105, targets 95/90); the bar opens at 102: filled at 102, risk 3
    bars = series([(102, 103, 101, 101.5), (101.5, 102, 89, 89.5)])
    r = run(trade("SHORT"), bars)
    assert r.fill_price[0] == 102.0
    assert (r.reason(0), r.exit_price[0]) == ("TARGET", 90.0)
    assert r.r_multiple[0] == pytest.approx((102 - 90) / 3)
    assert r.mae_price[0] == pytest.approx(1.0) and r.mfe_price[0] == pytest.approx(13.0)


def test_a_limit_gapped_through_its_stop_too_is_out_at_the_same_open() -> None:
    # LONG limit 100, stop 95, the bar opens at 94: the limit fills at 94 and the stop, already
    # crossed, sells at 94: no move, 0 R (not 0/0)
    r = run(trade(), series([(94, 96, 93, 95.5)]))
    assert (r.fill_price[0], r.reason(0), r.exit_price[0], r.r_multiple[0]) == (
        94.0,
        "STOP",
        94.0,
        0.0,
    )
    assert not r.first_target_hit[0]


def test_first_target_hit_is_the_first_target_before_the_stop() -> None:
    be = run(
        trade(), series([(101, 101, 99, 100.5), (100.5, 106, 101, 103), (103, 104, 99.9, 100)])
    )
    assert be.reason(0) == "BREAKEVEN" and be.first_target_hit[0]  # a win at 0 R
    stop = run(trade(), series([(101, 102, 99.5, 100.5), (100.5, 101, 94, 95.5)]))
    assert not stop.first_target_hit[0]
    timed = run(
        trade(),
        series([(101, 101, 99, 100.5), (101, 106, 100.5, 102), (102, 104, 100.5, 103)]),
        hold=3,
    )
    assert (timed.reason(0), timed.r_multiple[0]) == ("TIME", pytest.approx(0.6))
    assert timed.first_target_hit[0]
    # stop and first target on one bar without finer bars: the stop, not a win
    both = run(trade(market=True), series([(100, 106, 94, 100)]))
    assert both.reason(0) == "STOP" and both.ambiguous[0] and not both.first_target_hit[0]
    # ... ordered by finer bars, the first target came first: a win (then break-even)
    q = pd.Timedelta(minutes=15)
    up_first = series(
        [(100, 106, 99.5, 105), (105, 105, 99, 99.5), (99.5, 99.5, 94, 95), (95, 96, 95, 95)],
        step=q,
    )
    fine = run(trade(market=True), series([(100, 106, 94, 100)]), finer=up_first)
    assert fine.reason(0) == "BREAKEVEN" and fine.first_target_hit[0]
    unfilled = run(trade(), series([(103, 104, 101, 102)] * 4))
    assert unfilled.status[0] == "NOT_FILLED" and not unfilled.first_target_hit[0]
    assert np.isnan(unfilled.fill_price[0])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), gaps=st.integers(0, 40))
def test_fill_known_at_and_decided_at_give_the_outcome_as_of_every_earlier_horizon(
    seed: int, gaps: int
) -> None:
    """One call at the end says what a call at any earlier time would have said: OPEN
    before ``decided_at``, the final result from it on; filled from ``fill_known_at`` on.
    Bars go missing here and there (weekends, outages) so expiries and time exits are
    decided by a later bar than their deadline."""
    walk = _walk(seed, 200)
    keep = np.ones(200, bool)
    keep[np.random.default_rng(seed + 2).choice(np.arange(1, 200), gaps, replace=False)] = False
    columns = ("open_ns", "open", "high", "low", "close")
    bars = BarSeries(*(getattr(walk, f)[keep] for f in columns), H_NS)
    trades = _random_trades(seed, walk, 60)
    rule = TradeRule(4, 12)
    end = manage_trades(trades, bars, rule, int(bars.close_ns[-1]))
    decided = end.status != "OPEN"
    assert (end.decided_at[decided] > NO_TIME).all() and (end.decided_at[~decided] == NO_TIME).all()
    for h in np.r_[bars.close_ns, bars.close_ns[:-1] + H_NS // 2]:
        now = manage_trades(trades, bars, rule, int(h))
        placed = trades.placed_at <= h  # the lifecycle looks at a signal from its time on
        seen = decided & (end.decided_at <= h)
        assert ((now.status != "OPEN") == seen)[placed].all()
        known = (end.fill_known_at != NO_TIME) & (end.fill_known_at <= h)
        assert ((now.filled_at != NO_TIME) == known)[placed].all()
        for i in np.flatnonzero(seen):
            assert _row(now, i) == _row(end, i)
