"""Outcomes through the database, on SQLite and on the real Postgres: the window rewrite
is idempotent, the figures and the API carry hand-checked values, a TradingView signal's
reported exit is kept, and the lifecycle uses the same rule (market entries fill at once;
fill rate counts refined limits only)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alphapulse_dagster.analytics import outcome_refresh
from alphapulse_dagster.analytics.outcome_refresh import (
    plan_refresh,
    read_refresh,
    refresh_parts,
    write_refresh,
)
from alphapulse_dagster.analytics.outcome_store import (
    compute_outcomes,
    load_outcomes,
    signal_outcome,
    write_outcomes,
)
from alphapulse_dagster.analytics.outcomes import changed_decisions
from alphapulse_dagster.analytics.strategy_performance import strategy_report
from alphapulse_dagster.api import ApiSettings, create_app
from alphapulse_dagster.db.tables import ai_signals_mtf, signal_events, signals
from alphapulse_dagster.market.candle_store import upsert_candles
from alphapulse_dagster.market.timeframes import duration
from alphapulse_dagster.signals.mtf_lifecycle import advance_signals
from alphapulse_dagster.signals.mtf_metrics import mtf_metrics
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.signal_store import store_signals
from alphapulse_dagster.signals.trade_management import TradeRule
from tests.signal_factory import T0, refined_signal

H = timedelta(hours=1)
RULE = TradeRule(entry_valid_bars=4, max_holding_bars=96)
SINCE, UNTIL = T0 - timedelta(days=1), T0 + timedelta(days=1)
AS_OF = T0 + 6 * H
# 1h bars from T0 (open, high, low, close)
BARS = [(8000, 8010, 7950, 7990), (7990, 8400, 7985, 8380)] + [(8380, 8390, 8370, 8380)] * 6
OB = {
    "strategy": "ORDER_BLOCK",
    "pattern": "BULLISH_ORDER_BLOCK_TOP",
    "level": 7980.0,
    "valid": True,
}
TV_ID = "BTCUSD:20190603_040000_LONG"


def _candles(
    engine: sa.Engine,
    bars: list[tuple[float, float, float, float]] = BARS,
    symbol: str = "BTCUSD",
) -> None:
    frame = pd.DataFrame(
        [
            {"symbol": symbol, "open_time": pd.Timestamp(T0 + i * H), "open": o, "high": h,
             "low": lo, "close": c, "volume": 1.0}
            for i, (o, h, lo, c) in enumerate(bars)
        ]
    )  # fmt: skip
    with engine.begin() as connection:
        upsert_candles(connection, frame, "1h")


def _tradingview_signal(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(signals),
            {
                "signal_id": TV_ID, "source": "tradingview", "trade_id": "20190603_040000_LONG",
                "symbol": "BTCUSD", "direction": "LONG", "timeframe": "60", "status": "CLOSED",
                "signal_time": T0, "confirmed_at": T0 + H, "entry_price": 7990.0,
                "stop_loss": 7900.0, "targets": [8100.0, 8200.0], "exit_price": 8150.0,
                "exit_reason": "MANUAL", "field_provenance": {}, "first_event_id": 1,
                "last_event_id": 2, "updated_at": T0,
            },
        )  # fmt: skip


@pytest.fixture
def desk(engine: sa.Engine) -> sa.Engine:
    _candles(engine)
    long = refined_signal(entry_analysis={"candidates": [OB], "chosen": "FIBONACCI_618"})
    short = refined_signal(direction="SHORT")
    store_signals(engine, [long, short], SignalCache(None), T0, RULE.entry_valid_bars, duration)
    _tradingview_signal(engine)
    return engine


def _outcomes(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        frame = load_outcomes(connection, SINCE, UNTIL)
    return frame.set_index(["signal_id", "entry_mode"]).sort_index()


def test_outcomes_of_a_window_hand_checked_and_idempotent(desk: sa.Engine) -> None:
    long_id = refined_signal()["signal_id"]
    short_id = refined_signal(direction="SHORT")["signal_id"]
    for _ in range(2):  # the second rewrite of the window leaves the same rows
        written = write_outcomes(
            desk, compute_outcomes(desk, SINCE, UNTIL, RULE, AS_OF), SINCE, UNTIL
        )
        assert written == 6  # long: actual, market, ORDER_BLOCK; short: actual, market; TV
    o = _outcomes(desk)
    assert len(o) == 6
    # LONG limit 7960 fills on the first bar (low 7950); the second bar's high 8400 takes
    # the last target 8360: (8360 - 7960) / 120 = 3.333 R
    row = o.loc[(long_id, "actual")]
    assert (row.status, row.exit_reason, row.exit_price) == ("CLOSED", "TARGET", 8360.0)
    assert row.r_multiple == pytest.approx(400 / 120)
    assert row.filled_at == pd.Timestamp(T0) and row.exit_at == pd.Timestamp(T0 + 2 * H)
    # the same signal at market (8000, stop 1.5 ATR = 120 below) and at the order block
    assert o.loc[(long_id, "market")].r_multiple == pytest.approx(400 / 120)
    assert o.loc[(long_id, "ORDER_BLOCK")].entry_price == 7980.0
    # SHORT limit 8040 fills on the second bar, whose high 8400 also takes its stop 8160
    short = o.loc[(short_id, "actual")]
    assert (short.status, short.exit_reason, short.r_multiple) == ("CLOSED", "STOP", -1.0)
    # the TradingView signal: filled at its ENTRY (05:00) at 7990, target 8200 on 05:00's
    # bar; its own reported MANUAL exit at 8150 is kept beside it
    tv = o.loc[(TV_ID, "actual")]
    assert (tv.status, tv.exit_reason, tv.exit_price) == ("CLOSED", "TARGET", 8200.0)
    assert (tv.reported_exit_reason, tv.reported_exit_price) == ("MANUAL", 8150.0)
    assert tv.timeframe == "1h"  # TradingView's "60"


def test_strategy_report_and_api(desk: sa.Engine, db_url: str, tmp_path: Path) -> None:
    write_outcomes(desk, compute_outcomes(desk, SINCE, UNTIL, RULE, AS_OF), SINCE, UNTIL)
    with desk.connect() as connection:
        report = strategy_report(connection)
        detail = signal_outcome(connection, refined_signal()["signal_id"])
    (fib,) = [g for g in report["groups"] if g["key"] == "FIBONACCI_618"]
    assert (fib["n"], fib["win_rate"], fib["flag"]) == (2, 0.5, "small_sample")
    assert fib["expectancy_r"] == pytest.approx((400 / 120 - 1) / 2, abs=1e-6)
    # +3.33 and -1 R in either order: the equity falls 1 R from a peak (0 or 3.33)
    assert fib["max_drawdown_r"] == 1.0 and fib["fill_rate"] == 1.0
    # both refined limits earned what the market entry did: ΔR = 0 on two pairs
    assert report["paired"]["n"] == 2 and report["paired"]["delta_r"] == pytest.approx(0.0)
    assert detail is not None and detail["status"] == "CLOSED"
    assert set(detail["counterfactuals"]) == {"market", "ORDER_BLOCK"}

    settings = ApiSettings(database_url=db_url, spool_path=tmp_path / "spool.jsonl")
    with TestClient(create_app(settings)) as client:
        body = client.get("/analytics/strategies", params={"group_by": "source"}).json()
        assert {g["key"]: g["n"] for g in body["groups"]} == {"alphapulse": 2, "tradingview": 1}
        assert set(body["paired"]) >= {"n", "delta_r", "delta_ci", "missed_r"}
        assert client.get("/analytics/strategies", params={"group_by": "colour"}).status_code == 422
        one = client.get(f"/signals/{TV_ID}").json()
        assert one["outcome"]["exit_reason"] == "TARGET"
        assert one["outcome"]["reported_exit_reason"] == "MANUAL"
        metrics = client.get("/metrics/mtf").json()
        assert metrics["outcome_fill_rate"] == 1.0 and metrics["paired_n"] == 2


def test_a_market_entry_is_confirmed_at_the_signal_close_by_the_lifecycle(
    engine: sa.Engine,
) -> None:
    # regression: a MARKET_ENTRY was tracked as a limit at the close and could expire: here
    # no low ever comes back to the close (8000), as in the held-out example
    _candles(
        engine,
        [(8005, 8020, 8001, 8010), (8010, 8410, 8008, 8400)] + [(8400, 8410, 8390, 8400)] * 6,
    )
    market = refined_signal(entry_strategy="MARKET_ENTRY", entry_pattern="NO_KEY_LEVEL",
                            entry_price=8000.0, stop_loss=7880.0,
                            take_profits=[8160.0, 8240.0, 8400.0])  # fmt: skip
    store_signals(engine, [market], SignalCache(None), T0, RULE.entry_valid_bars, duration)
    advance_signals(engine, SignalCache(None), T0 + H, RULE, T0)
    with engine.connect() as connection:
        row = connection.execute(sa.select(ai_signals_mtf)).one()
    assert (row.status, row.filled_at) == ("CONFIRMED", T0)
    advance_signals(engine, SignalCache(None), AS_OF, RULE, T0)  # 8400 on the second bar
    with engine.connect() as connection:
        row = connection.execute(sa.select(ai_signals_mtf)).one()
    assert (row.status, row.status_reason) == ("CLOSED", "TARGET")


def test_fill_rate_counts_refined_limits_only(engine: sa.Engine) -> None:
    # regression: market entries were counted as filled limits (50% here instead of 1/3)
    rows = [
        refined_signal(symbol=f"COIN{k}", entry_strategy=strategy)  # one active per symbol
        for k, strategy in enumerate(["FIBONACCI_618"] * 3 + ["MARKET_ENTRY"])
    ]
    store_signals(engine, rows, SignalCache(None), T0, RULE.entry_valid_bars, duration)
    states = [
        ("CLOSED", "TARGET"),
        ("CANCELLED", "EXPIRED"),
        ("CANCELLED", "EXPIRED"),
        ("CLOSED", "STOP"),
    ]
    with engine.begin() as connection:
        for row, (status, reason) in zip(rows, states, strict=True):
            connection.execute(
                sa.update(ai_signals_mtf)
                .where(ai_signals_mtf.c.signal_id == row["signal_id"])
                .values(status=status, status_reason=reason)
            )
        figures = mtf_metrics(connection, T0)
    assert figures["fill_rate"] == pytest.approx(100 / 3, abs=1e-3)


def test_finer_stored_candles_order_a_bar_that_touched_stop_and_target(engine: sa.Engine) -> None:
    # a market LONG at 8000 (stop 7880, last target 8400) whose first bar touches both
    wide = [(8000, 8410, 7870, 8000)] + [(8000, 8010, 7990, 8000)] * 6
    _candles(engine, wide)
    market = refined_signal(entry_strategy="MARKET_ENTRY", entry_pattern="NO_KEY_LEVEL",
                            entry_price=8000.0, stop_loss=7880.0,
                            take_profits=[8160.0, 8240.0, 8400.0])  # fmt: skip
    store_signals(engine, [market], SignalCache(None), T0, RULE.entry_valid_bars, duration)
    alone = compute_outcomes(engine, SINCE, UNTIL, RULE, AS_OF).set_index("entry_mode")
    assert (alone.at["actual", "exit_reason"], bool(alone.at["actual", "ambiguous"])) == (
        "STOP",
        True,
    )
    quarter = timedelta(minutes=15)  # the 15m bars say the target came first
    fine = pd.DataFrame(
        [{"symbol": "BTCUSD", "open_time": pd.Timestamp(T0 + k * quarter), "open": o, "high": h,
          "low": lo, "close": c, "volume": 1.0}
         for k, (o, h, lo, c) in enumerate([(8000, 8410, 7995, 8300), (8300, 8300, 7870, 7900),
                                            (7900, 8000, 7890, 7990), (7990, 8000, 7980, 8000)])]
    )  # fmt: skip
    with engine.begin() as connection:
        upsert_candles(connection, fine, "15m")
    resolved = compute_outcomes(engine, SINCE, UNTIL, RULE, AS_OF).set_index("entry_mode")
    assert resolved.at["actual", "exit_reason"] == "TARGET"
    assert not bool(resolved.at["actual", "ambiguous"])
    assert resolved.at["actual", "exit_at"] == pd.Timestamp(T0 + quarter)


def test_a_refresh_rereads_and_writes_only_what_can_change(desk: sa.Engine) -> None:
    # an hour after T0 the LONG limit has filled and is open; the SHORT limit is pending
    early = plan_refresh(desk, SINCE, UNTIL, RULE, T0 + H)
    assert len(early.fresh) == 6 and len(early.rows_to_write) == 6  # all new
    assert write_refresh(desk, early) == 6
    open_then = set(early.fresh.loc[early.fresh["status"] == "OPEN", "signal_id"])
    assert refined_signal()["signal_id"] in open_then
    # at AS_OF every outcome is decided: the open signals are re-read and rewritten
    decided = plan_refresh(desk, SINCE, UNTIL, RULE, AS_OF)
    assert decided.changed == open_then
    assert write_refresh(desk, decided) == len(decided.rows_to_write)
    assert set(_outcomes(desk)["status"]) == {"CLOSED"}
    # two days on, every signal settled (decided more than a day of data before; the
    # TradingView one also CLOSED in the registry): nothing re-read, nothing written
    later = plan_refresh(desk, SINCE, UNTIL, RULE, AS_OF + timedelta(days=2))
    assert later.fresh.empty and later.changed == set()
    assert write_refresh(desk, later) == 0 and len(later.window) == 6
    # until the registry has its exit, a TradingView signal is re-read
    with desk.begin() as connection:
        connection.execute(sa.update(signals).values(status="CONFIRMED"))
    pending = plan_refresh(desk, SINCE, UNTIL, RULE, AS_OF + timedelta(days=2))
    assert set(pending.fresh["signal_id"]) == {TV_ID} and pending.changed == set()
    # re-reading the decided ones on purpose finds them unchanged
    full = plan_refresh(desk, SINCE, UNTIL, RULE, AS_OF + timedelta(days=2), recompute_decided=True)
    assert len(full.fresh) == 6 and full.changed == set()
    assert changed_decisions(full.previous, full.fresh).empty


def test_a_refresh_in_parts_of_instruments_equals_one_in_a_single_part(
    desk: sa.Engine,
) -> None:
    """The asset computes (and writes) a part of instruments at a time: cut into one part
    per instrument, the refresh finds the same rows and the same changes as in one part,
    and never splits a signal's trades over two parts."""
    _candles(desk, [(o * 2, h * 2, lo * 2, c * 2) for o, h, lo, c in BARS], symbol="ETHUSD")
    eth = [
        refined_signal("ETHUSD", market_price=16000.0, entry_price=15920.0, stop_loss=15680.0,
                       take_profits=[16240.0, 16400.0, 16720.0], atr=160.0),
        refined_signal("ETHUSD", "SHORT", market_price=16000.0, entry_price=16080.0,
                       stop_loss=16320.0, take_profits=[15760.0, 15600.0, 15280.0], atr=160.0),
    ]  # fmt: skip
    store_signals(desk, eth, SignalCache(None), T0, RULE.entry_valid_bars, duration)
    with desk.connect() as connection:
        reads = read_refresh(connection, SINCE, UNTIL, AS_OF)
        one = list(refresh_parts(connection, reads, RULE, AS_OF))
        parts = list(refresh_parts(connection, reads, RULE, AS_OF, part_trades=1))
    whole = outcome_refresh.whole_refresh(reads, one)
    assert len(parts) == 2  # BTCUSD (two MTF signals and the TradingView one), ETHUSD
    assert [sorted(set(p.fresh["symbol"])) for p in parts] == [["BTCUSD"], ["ETHUSD"]]
    assert len(parts[0].fresh) == 6 and len(parts[1].fresh) == 4  # ETH: actual + market each
    in_parts = outcome_refresh.whole_refresh(reads, parts)
    key = ["signal_id", "entry_mode"]
    pd.testing.assert_frame_equal(
        in_parts.fresh.sort_values(key).reset_index(drop=True),
        whole.fresh.sort_values(key).reset_index(drop=True),
    )
    assert in_parts.changed == whole.changed == set(whole.fresh["signal_id"])
    # the ETH LONG limit 15920 fills on the first bar (low 15900) and the second bar's
    # high 16800 takes its last target 16720: (16720 - 15920) / 240 = 3.333 R
    eth_long = parts[1].fresh.set_index(key).loc[(eth[0]["signal_id"], "actual")]
    assert (eth_long.status, eth_long.exit_reason) == ("CLOSED", "TARGET")
    assert eth_long.r_multiple == pytest.approx(800 / 240)


def test_a_limit_gapped_through_fills_at_the_open_in_the_lifecycle_and_the_outcome(
    engine: sa.Engine,
) -> None:
    # LONG limit 7960 (stop 7840, last target 8360); the first bar opens at 7940, below the
    # limit: filled at 7940, the better price. Risk 7940 - 7840 = 100; the second bar's high
    # 8400 takes 8360: R = (8360 - 7940) / 100 = 4.2
    _candles(engine, [(7940, 7970, 7930, 7965), (7965, 8400, 7960, 8380)] + [BARS[-1]] * 6)
    store_signals(
        engine, [refined_signal()], SignalCache(None), T0, RULE.entry_valid_bars, duration
    )
    advance_signals(engine, SignalCache(None), AS_OF, RULE, T0)
    with engine.connect() as connection:
        entry = connection.execute(
            sa.select(signal_events.c.payload).where(signal_events.c.event_type == "ENTRY")
        ).scalar_one()
    assert entry["entry_price"] == 7940.0  # the lifecycle records the fill price
    actual = compute_outcomes(engine, SINCE, UNTIL, RULE, AS_OF).set_index("entry_mode")
    assert (actual.at["actual", "entry_price"], actual.at["actual", "exit_reason"]) == (
        7940.0,
        "TARGET",
    )
    assert actual.at["actual", "r_multiple"] == pytest.approx(4.2)
