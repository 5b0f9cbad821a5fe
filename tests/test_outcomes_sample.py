"""Outcomes on the bundled sample agree with a plain per-bar loop written here, and the
lifecycle of the stored signals agrees with the outcomes (one rule, one owner)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from alphapulse_dagster.analytics.entry_modes import mtf_plan
from alphapulse_dagster.analytics.outcome_store import candle_reader
from alphapulse_dagster.analytics.outcomes import evaluate_outcomes
from alphapulse_dagster.cli.candles import import_candles
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.market.candle_store import load_candles
from alphapulse_dagster.signals.mtf_run import generate_window
from alphapulse_dagster.signals.trade_management import TradeRule

START, END = datetime(2017, 1, 1, tzinfo=UTC), datetime(2019, 12, 31, tzinfo=UTC)
RULE = TradeRule(entry_valid_bars=4, max_holding_bars=96)


@pytest.fixture(scope="module")
def sample_engine(
    tmp_path_factory: pytest.TempPathFactory, sample_dir: Path
) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sample') / 'sample.db'}"
    upgrade(url)
    import_candles(sample_dir, url, progress=False)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def plain_loop(trade: dict, bars: dict, hold: int, horizon: pd.Timestamp) -> dict:
    """The rule of signals/trade_management.py, one bar at a time, without finer bars.
    ``bars``: ``times`` (open times, a list) and ``open/high/low/close`` lists."""
    bar = pd.Timedelta(hours=1)
    sign = 1.0 if trade["direction"] == "LONG" else -1.0
    e, s0 = sign * trade["limit_price"], sign * trade["stop_loss"]
    t1, tl = sign * trade["first_target"], sign * trade["last_target"]
    times = bars["times"]
    first = bisect.bisect_left(times, trade["placed_at"])
    o, h, low, c = (bars[k] for k in ("open", "high", "low", "close"))

    def visible(i: int) -> bool:
        return i < len(times) and times[i] + bar <= horizon

    fill, gapped = None, False
    if trade["at_market"]:
        fill, filled_at = first, trade["placed_at"]
    else:
        i = first
        while visible(i) and times[i] + bar <= trade["expires_at"]:
            if (low[i] if sign > 0 else -h[i]) <= e:
                fill, filled_at = i, times[i]
                gapped = sign * o[i] < e  # opened beyond the limit: filled at the open
                e = min(e, sign * o[i])
                break
            i += 1
    if fill is None:
        return {"status": "NOT_FILLED" if horizon >= trade["expires_at"] else "OPEN"}
    deadline = filled_at + hold * bar
    stop, tp1_before, best, worst, held = s0, False, -math.inf, math.inf, 0
    i = fill
    while visible(i) and times[i] + bar <= deadline:
        k = i - fill
        hi = h[i] if sign > 0 else -low[i]
        lo = low[i] if sign > 0 else -h[i]
        op, cl = sign * o[i], sign * c[i]
        on_fill_bar = k == 0 and not trade["at_market"] and not gapped
        if on_fill_bar:
            hi = max(e, cl)
        best, worst, held = max(best, hi), min(worst, lo), k + 1
        stop_hit, t1_hit, tl_hit = lo <= stop, hi >= t1, hi >= tl
        at = times[i] + bar
        if stop_hit:
            price = op if (not on_fill_bar and op < stop) else stop
            ambiguous = tl_hit or (not tp1_before and t1_hit)
            reason = "STOP" if not tp1_before else "BREAKEVEN"
            return _closed(sign, e, s0, reason, price, at, filled_at, best, worst, held, ambiguous)
        if tl_hit:
            return _closed(sign, e, s0, "TARGET", tl, at, filled_at, best, worst, held, False)
        if t1_hit and not tp1_before:
            tp1_before, stop = True, e  # from the next bar on
        last_close, last_time = cl, at
        i += 1
    if horizon >= deadline and held:
        timed = _closed(
            sign, e, s0, "TIME", last_close, last_time, filled_at, best, worst, held, False
        )
        return {**timed, "first_target_hit": tp1_before}
    return {"status": "OPEN", "filled_at": filled_at}


def _closed(sign, e, s0, reason, price, at, filled_at, best, worst, held, ambiguous) -> dict:  # type: ignore[no-untyped-def]
    risk = abs(e - s0)
    return {
        "status": "CLOSED",
        "exit_reason": reason,
        "exit_price": sign * price,
        "r_multiple": 0.0 if price == e else (price - e) / risk,
        "exit_at": at,
        "filled_at": filled_at,
        "mfe_r": max(best - e, 0.0) / risk,
        "mae_r": max(e - worst, 0.0) / risk,
        "bars_held": held,
        "ambiguous": ambiguous,
        "first_target_hit": reason in ("TARGET", "BREAKEVEN"),  # a win: TP1 before the stop
    }


def test_outcomes_on_the_sample_equal_a_plain_per_bar_loop(sample_engine: sa.Engine) -> None:
    signals = generate_window(sample_engine, load_config(), START, END)
    assert len(signals) > 300  # the whole bundled history
    plan = mtf_plan(signals.rename(columns={"entry_analysis": "analysis"}))
    assert set(plan["entry_mode"]) >= {"actual", "market", "FIBONACCI_618", "ORDER_BLOCK"}
    with sample_engine.connect() as connection:
        outcomes = evaluate_outcomes(plan, candle_reader(connection, END, plan), RULE, END)
        frames = {
            s: load_candles(connection, [s], "1h", START, END) for s in plan["symbol"].unique()
        }
    bars = {
        s: {
            "times": f["open_time"].tolist(),
            **{k: f[k].tolist() for k in ("open", "high", "low", "close")},
        }
        for s, f in frames.items()
    }
    assert len(outcomes) == len(plan)
    merged = outcomes.merge(
        plan[
            ["signal_id", "entry_mode", "placed_at", "expires_at", "at_market", "entry_price"]
        ].rename(columns={"entry_price": "limit_price"}),
        on=["signal_id", "entry_mode"],
    )
    statuses = {"CLOSED": 0, "NOT_FILLED": 0, "OPEN": 0}
    for row in merged.to_dict("records"):
        symbol_bars = bars[row["symbol"]]
        # the data horizon: the last bar close seen, at most the as-of time
        horizon = min(pd.Timestamp(END), symbol_bars["times"][-1] + pd.Timedelta(hours=1))
        expected = plain_loop(row, symbol_bars, RULE.max_holding_bars, horizon)
        statuses[expected["status"]] += 1
        assert row["status"] == expected["status"], row
        if expected["status"] != "CLOSED":
            continue
        assert row["exit_reason"] == expected["exit_reason"], row
        assert row["exit_at"] == expected["exit_at"] and row["filled_at"] == expected["filled_at"]
        assert (
            row["bars_held"] == expected["bars_held"] and row["ambiguous"] == expected["ambiguous"]
        )
        assert row["first_target_hit"] == expected["first_target_hit"], row
        for field in ("exit_price", "r_multiple", "mfe_r", "mae_r"):
            assert row[field] == pytest.approx(expected[field], rel=1e-9, abs=1e-12), (field, row)
    assert statuses["CLOSED"] > 500 and statuses["NOT_FILLED"] > 300  # both paths exercised
    assert merged["ambiguous"].sum() > 0 and (merged["exit_reason"] == "TIME").sum() > 0
    assert (merged["exit_reason"] == "BREAKEVEN").sum() > 0


def test_every_counterfactual_keeps_the_actual_distances_in_atr(sample_engine: sa.Engine) -> None:
    signals = generate_window(sample_engine, load_config(), START, datetime(2017, 9, 1, tzinfo=UTC))
    plan = mtf_plan(signals.rename(columns={"entry_analysis": "analysis"}))
    atr = plan["signal_id"].map(signals.set_index("signal_id")["atr"])
    stop_atr = (plan["entry_price"] - plan["stop_loss"]).abs() / atr
    per_signal = stop_atr.groupby(plan["signal_id"]).agg(["min", "max"])
    assert np.allclose(per_signal["min"], per_signal["max"], rtol=1e-9)
    sign = np.where(plan["direction"] == "LONG", 1, -1)
    assert ((plan["last_target"] - plan["entry_price"]) * sign > 0).all()
