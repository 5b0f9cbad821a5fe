"""Tiered reconciliation: trade_id parsing, MFE/MAE, precedence, audit, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hybrid_sync_support import CONFIG, T0, append, created, entry, event, load_candles, registry

from alphapulse_dagster.db.tables import signal_gaps, signal_health_metrics, signals, sync_audit_log
from alphapulse_dagster.sync.excursions import excursion
from alphapulse_dagster.sync.sync_cycle import SyncRequest, run_sync
from alphapulse_dagster.sync.tiers import Candidate, plan_changes
from alphapulse_dagster.sync.trade_id import parse_trade_id

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("trade_id", "when", "direction", "symbol"),
    [
        ("20250106_120000_BULLISH", datetime(2025, 1, 6, 12, tzinfo=UTC), "LONG", None),
        ("20250106_120000_BEARISH", datetime(2025, 1, 6, 12, tzinfo=UTC), "SHORT", None),
        ("20241231_235959_LONG", datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC), "LONG", None),
        ("20250106_000001_SHORT", datetime(2025, 1, 6, 0, 0, 1, tzinfo=UTC), "SHORT", None),
        ("20250106_120000_LONG_BTCUSDT", datetime(2025, 1, 6, 12, tzinfo=UTC), "LONG", "BTCUSDT"),
        ("20250106_120000_BEARISH_NQ1!", datetime(2025, 1, 6, 12, tzinfo=UTC), "SHORT", "NQ1!"),
        ("20250106_120000_bullish", datetime(2025, 1, 6, 12, tzinfo=UTC), "LONG", None),
    ],
)
def test_trade_id_forms(trade_id: str, when: datetime, direction: str, symbol: str | None) -> None:
    parsed = parse_trade_id(trade_id)
    assert parsed is not None
    assert (parsed.signal_time, parsed.direction, parsed.symbol) == (when, direction, symbol)


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "",
        "abc",
        "12345",
        "20250106_120000",
        "20250106_120000_UP",
        "20250106_1200_LONG",
        "2025016_120000_LONG",
        "20251399_120000_LONG",  # impossible date
        "20250106_250000_SHORT",  # impossible time
        "x20250106_120000_LONG",
        "20250106_120000_LONG_",
    ],
)
def test_trade_id_garbage_is_not_parseable(garbage: str | None) -> None:
    assert parse_trade_id(garbage) is None


def test_excursion_long_hand_computed() -> None:
    ex = excursion("LONG", 100.0, 95.0, [105.0, 110.0, 115.0], [103, 108, 106], [98, 97, 101])
    assert (ex.highest, ex.lowest) == (108, 97)
    assert (ex.mfe_price, ex.mae_price) == (8.0, 3.0)  # 108 - 100, 100 - 97
    assert ex.mfe == pytest.approx(1.6) and ex.mae == pytest.approx(0.6)  # / |100 - 95|
    assert ex.target_hit == 1 and ex.stop_hit is False


def test_excursion_short_hand_computed() -> None:
    ex = excursion("SHORT", 100.0, 104.0, [96.0, 92.0], [101, 103], [97, 95])
    assert (ex.mfe_price, ex.mae_price) == (5.0, 3.0)  # 100 - 95, 103 - 100
    assert ex.mfe == pytest.approx(1.25) and ex.mae == pytest.approx(0.75)  # / 4
    assert ex.target_hit == 1 and ex.stop_hit is False
    hit = excursion("SHORT", 100.0, 104.0, [96.0], [105], [99])
    assert hit.stop_hit is True and hit.mfe_price == 1.0 and hit.mae_price == 5.0


def test_excursions_are_never_negative() -> None:
    ex = excursion("LONG", 100.0, 95.0, None, [99.0], [96.0])  # never above entry
    assert ex.mfe_price == 0.0 and ex.mae_price == 4.0


def test_mfe_mae_from_candles_for_a_long_and_a_short(engine: sa.Engine) -> None:
    long_tid, short_tid = "20250106_120000_LONG", "20250106_120000_SHORT"
    append(
        engine,
        entry(long_tid, T0, entry_price=100.0, stop_loss=95.0, targets=[105.0, 110.0]),
        entry(
            short_tid,
            T0,
            symbol="ETHUSDT",
            direction="SHORT",
            entry_price=100.0,
            stop_loss=104.0,
            targets=[96.0, 92.0],
        ),
    )
    load_candles(
        engine,
        "BTCUSDT",
        "1h",
        T0,
        [(100, 103, 98, 102), (102, 108, 97, 107), (107, 106, 101, 104)],
    )
    load_candles(
        engine, "ETHUSDT", "1h", T0, [(100, 101, 97, 98), (98, 103, 95, 96), (96, 99, 96, 97)]
    )
    run_sync(engine, CONFIG, T0 + 3 * H, "r1")
    row = registry(engine, f"BTCUSDT:{long_tid}")
    assert (row["mfe_price"], row["mae_price"], row["highest"], row["lowest"]) == (8, 3, 108, 97)
    assert row["mfe"] == pytest.approx(1.6) and row["mae"] == pytest.approx(0.6)
    assert row["target_hit"] == 1 and row["stop_hit"] is False
    assert row["field_provenance"]["mfe"]["tier"] == "1"
    assert row["field_provenance"]["mfe"]["source"] == "candles:1h"
    row = registry(engine, f"ETHUSDT:{short_tid}")
    assert (row["mfe_price"], row["mae_price"]) == (5, 3)
    assert row["mfe"] == pytest.approx(1.25) and row["mae"] == pytest.approx(0.75)
    # the next bar extends the run: same tier re-measures (audited), confidence unchanged
    load_candles(engine, "BTCUSDT", "1h", T0 + 3 * H, [(104, 112, 103, 111)])
    run_sync(engine, CONFIG, T0 + 4 * H, "r2")
    row = registry(engine, f"BTCUSDT:{long_tid}")
    assert row["mfe_price"] == 12 and row["target_hit"] == 2
    with engine.connect() as conn:
        fields = set(
            conn.execute(
                sa.select(sync_audit_log.c.field).where(sync_audit_log.c.sync_run_id == "r2")
            ).scalars()
        )
    assert {"mfe", "mfe_price", "highest", "target_hit"} <= fields


def test_candles_with_a_hole_do_not_cover_the_trade(engine: sa.Engine) -> None:
    tid = "20250106_120000_LONG"
    append(engine, entry(tid, T0), event("MFE_UPDATE", tid, T0 + 2 * H, mfe=1.2, mae=0.4))
    load_candles(engine, "BTCUSDT", "1h", T0, [(100, 103, 98, 102)])
    load_candles(engine, "BTCUSDT", "1h", T0 + 2 * H, [(100, 103, 98, 102)])  # 13:00 missing
    run_sync(engine, CONFIG, T0 + 3 * H, "r1")
    row = registry(engine, f"BTCUSDT:{tid}")
    assert row["field_provenance"]["mfe"]["tier"] == "2"  # fell back to the MFE_UPDATE
    assert row["mfe"] == 1.2 and row["mae"] == 0.4
    assert row["mfe_price"] == pytest.approx(6.0)  # 1.2 R x |100 - 95|


def _row(**values):  # type: ignore[no-untyped-def]
    base = {"signal_id": "s", "field_provenance": {}}
    base.update(values)
    return base


def test_lower_tier_never_overwrites_a_more_confident_value() -> None:
    for tier, confidence in (("3", 0.9), ("0", 1.0), ("1", 1.0)):
        row = _row(
            targets=[1.0, 2.0],
            field_provenance={"targets": {"tier": tier, "confidence": confidence}},
        )
        offer = {"targets": Candidate("2", [9.0, 10.0, 11.0], "calc", "Tier 2")}
        assert plan_changes(row, offer) == []
    # equal confidence (0.8 over 0.8, different source) does not overwrite either
    row = _row(targets=[1.0], field_provenance={"targets": {"tier": "2", "confidence": 0.8}})
    assert plan_changes(row, {"targets": Candidate("2", [3.0], "calc", "x")}) == []
    # Tier 3 (0.9) over Tier 2 (0.8) does
    row = _row(direction="LONG", field_provenance={"direction": {"tier": "2", "confidence": 0.8}})
    (change,) = plan_changes(row, {"direction": Candidate("3", "SHORT", "trade_id", "x")})
    assert (change.new, change.confidence, change.old_confidence) == ("SHORT", 0.9, 0.8)


def test_tier0_overwrites_tier2_targets_and_is_audited(engine: sa.Engine) -> None:
    tid = "20250106_120000_LONG"
    append(engine, entry(tid, T0 + H))  # entry 100, stop 95, no targets
    run_sync(engine, CONFIG, T0 + 2 * H, "r1")
    row = registry(engine, f"BTCUSDT:{tid}")
    assert row["targets"] == [105.0, 110.0, 115.0]  # 1R / 2R / 3R
    assert row["field_provenance"]["targets"]["confidence"] == 0.8
    append(engine, created(tid, T0, targets=[104.0, 108.0]))  # carries the real targets
    run_sync(engine, CONFIG, T0 + 2 * H, "r2")
    row = registry(engine, f"BTCUSDT:{tid}")
    assert row["targets"] == [104.0, 108.0]
    assert row["field_provenance"]["targets"]["tier"] == "0"
    with engine.connect() as conn:
        audit = (
            conn.execute(
                sa.select(sync_audit_log).where(
                    sync_audit_log.c.sync_run_id == "r2", sync_audit_log.c.field == "targets"
                )
            )
            .mappings()
            .one()
        )
    assert audit["old_value"] == [105.0, 110.0, 115.0] and audit["new_value"] == [104.0, 108.0]
    assert (audit["tier"], audit["confidence"], audit["old_confidence"]) == ("0", 1.0, 0.8)


def test_trade_id_fills_signal_time_then_signal_created_overrides(engine: sa.Engine) -> None:
    tid = "20250106_113000_BEARISH"
    append(engine, entry(tid, T0 + H, direction=None, stop_loss=105.0))  # no direction sent
    run_sync(engine, CONFIG, T0 + 2 * H, "r1")
    row = registry(engine, f"BTCUSDT:{tid}")
    assert row["direction"] == "SHORT" and row["field_provenance"]["direction"]["tier"] == "3"
    assert row["signal_time"] == datetime(2025, 1, 6, 11, 30, tzinfo=UTC)
    assert row["field_provenance"]["signal_time"]["confidence"] == 0.9
    append(engine, created(tid, T0 - H, direction="BEARISH"))
    run_sync(engine, CONFIG, T0 + 2 * H, "r2")
    row = registry(engine, f"BTCUSDT:{tid}")
    assert row["signal_time"] == T0 - H
    assert row["field_provenance"]["signal_time"] == {
        "tier": "0",
        "confidence": 1.0,
        "source": row["field_provenance"]["signal_time"]["source"],
        "at": (T0 + 2 * H).isoformat(),
    }


def _snapshot(engine: sa.Engine) -> tuple:  # type: ignore[type-arg]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(signals).order_by(signals.c.signal_id)).all()
        gaps = conn.execute(sa.select(signal_gaps).order_by(signal_gaps.c.gap_id)).all()
        audit = conn.execute(sa.select(sa.func.count()).select_from(sync_audit_log)).scalar()
    return rows, gaps, audit


def test_second_sync_without_new_events_writes_nothing(engine: sa.Engine) -> None:
    tid = "20250106_120000_LONG"
    append(
        engine,
        created(tid, T0),
        entry(tid, T0 + H),
        event("MFE_UPDATE", tid, T0 + 2 * H, mfe=0.5, mae=0.2),
        entry("20250106_130000_SHORT", T0 + H, direction="SHORT", stop_loss=104.0),
        created("20250106_140000_LONG", T0 + 2 * H),
    )
    load_candles(engine, "BTCUSDT", "1h", T0, [(100, 103, 98, 102)] * 3)
    first = run_sync(engine, CONFIG, T0 + 3 * H, "r1")
    assert first.reconcile.fields_changed > 0
    before = _snapshot(engine)
    second = run_sync(engine, CONFIG, T0 + 3 * H, "r2")
    assert second.reconcile.fields_changed == 0
    assert (second.gaps.opened, second.gaps.resolved) == (0, 0)
    assert _snapshot(engine) == before  # registry, gaps and audit untouched
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).where(sync_audit_log.c.sync_run_id == "r2")
            ).scalar()
            == 0
        )
        # the health measurement is a time series: one row per cycle
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(signal_health_metrics)).scalar()
            == 2
        )
    third = run_sync(engine, CONFIG, T0 + 3 * H, "r3", SyncRequest(full=True))
    assert third.reconcile.fields_changed == 0 and _snapshot(engine) == before
