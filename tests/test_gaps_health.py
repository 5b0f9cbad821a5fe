"""Gap detection (each type detected, then cleared by its tier), the seed's scenario, the
health report, and concurrent syncs on the real Postgres."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hybrid_sync_support import (
    CONFIG,
    T0,
    append,
    created,
    entry,
    event,
    load_candles,
    open_gaps,
    registry,
)

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_gaps, signals, sync_audit_log
from alphapulse_dagster.sync.gap_rules import GAP_TYPES, GapInputs
from alphapulse_dagster.sync.gaps import detect_gaps
from alphapulse_dagster.sync.health import format_health, health_report, latest_health
from alphapulse_dagster.sync.projection import project_log
from alphapulse_dagster.sync.sync_cycle import SyncBusy, run_sync, sync_lock

H = timedelta(hours=1)
NOW = T0 + 6 * H


def sid(tid: str) -> str:
    return f"BTCUSDT:{tid}"


# gap type -> (events that open it, (what arrives for the tier, the field and tier that fill it))
def _scenarios() -> dict[str, tuple[list[Any], Callable[[sa.Engine], None], str | None, str]]:
    a, b, c, d, e, f = (f"20250106_1{n}0000_LONG" for n in range(6))
    return {
        "no_signal_created": (
            [entry(a, T0 + H)],
            lambda en: append(en, created(a, T0)),
            "htf_alignment",
            "0",
        ),
        "no_htf_alignment": (
            [entry(a, T0 + H)],
            lambda en: append(en, created(a, T0)),
            "htf_alignment",
            "0",
        ),
        "no_confirmation_time": (
            [entry(a, T0 + H)],
            lambda en: append(en, created(a, T0)),
            "confirmation_time",
            "0",
        ),
        "no_metadata": ([entry(a, T0 + H)], lambda en: append(en, created(a, T0)), "session", "0"),
        "no_entry_price": (
            [entry(b, T0 + H, entry_price=None)],
            lambda en: append(en, created(b, T0, entry_price=100.0)),
            "entry_price",
            "0",
        ),
        "no_stop_loss": (
            [entry(c, T0 + H, stop_loss=None)],
            lambda en: append(en, created(c, T0, stop_loss=95.0)),
            "stop_loss",
            "0",
        ),
        # Tier 2 fills targets as soon as reconciliation runs
        "no_targets": ([created(d, T0), entry(d, T0 + H)], lambda en: None, "targets", "2"),
        # an active trade, no MFE_UPDATE for > 60 min: candles covering it (Tier 1) clear it
        "no_mfe_update": (
            [created(e, T0), entry(e, T0 + H)],
            lambda en: load_candles(en, "BTCUSDT", "1h", T0 + H, [(100, 102, 99, 101)] * 5),
            "mfe",
            "1",
        ),
        # no candles: the MFE_UPDATE snapshot (Tier 2) gives MAE
        "no_mae": (
            [created(f, T0), entry(f, T0 + H)],
            lambda en: append(
                en, event("MFE_UPDATE", f, NOW - 10 * timedelta(minutes=1), mfe=0.8, mae=0.3)
            ),
            "mae",
            "2",
        ),
    }


@pytest.mark.parametrize("gap_type", GAP_TYPES)
def test_each_gap_is_detected_and_cleared_by_its_tier(engine: sa.Engine, gap_type: str) -> None:
    opening, fill, field, tier = _scenarios()[gap_type]
    append(engine, *opening)
    signal_id = opening[-1].signal_id
    # the rule sees the gap on the folded row, before any tier ran
    with engine.begin() as conn:
        project_log(conn, NOW)
    has_created = any(e.event_type == "SIGNAL_CREATED" for e in opening)
    inputs = GapInputs(has_created, {}, NOW, CONFIG.hybrid_sync)
    detected = detect_gaps(registry(engine, signal_id), inputs, CONFIG.hybrid_sync)
    assert gap_type in {gap.gap_type for gap in detected}
    run_sync(engine, CONFIG, NOW, "detect")
    if gap_type == "no_targets":  # Tier 2 fills them in the cycle that folds the entry
        assert (signal_id, gap_type) not in open_gaps(engine, signal_id)
        assert registry(engine, signal_id)["field_provenance"][field]["tier"] == tier
        return
    assert (signal_id, gap_type) in open_gaps(engine, signal_id)
    fill(engine)
    report = run_sync(engine, CONFIG, NOW, "fill")
    assert (signal_id, gap_type) not in open_gaps(engine, signal_id)
    row = registry(engine, signal_id)
    assert row["field_provenance"][field]["tier"] == tier
    assert report.gaps.resolved >= 1
    with engine.connect() as conn:
        resolved = conn.execute(
            sa.select(signal_gaps.c.resolved_at).where(
                signal_gaps.c.signal_id == signal_id, signal_gaps.c.gap_type == gap_type
            )
        ).scalar_one()
    assert resolved == NOW


def test_gap_kinds_weights_and_fillability(engine: sa.Engine) -> None:
    append(engine, entry("20250106_120000_LONG", T0 + H))  # no SIGNAL_CREATED will come
    run_sync(engine, CONFIG, NOW, "r1")
    with engine.connect() as conn:
        gaps = {
            r.gap_type: r
            for r in conn.execute(sa.select(signal_gaps).where(signal_gaps.c.resolved_at.is_(None)))
        }
    assert gaps["no_signal_created"].fillable is False
    assert gaps["no_htf_alignment"].fillable is False  # nothing can supply it
    assert gaps["no_mfe_update"].kind == "expected" and gaps["no_mfe_update"].fillable is True
    assert (
        gaps["no_htf_alignment"].weight == CONFIG.hybrid_sync.gap_rules["no_htf_alignment"].weight
    )
    row = registry(engine, sid("20250106_120000_LONG"))
    assert row["health_score"] == max(0.0, 100 - sum(g.weight for g in gaps.values()))


def _seed_day(engine: sa.Engine) -> list[str]:
    """43 confirmed TradingView signals with no SIGNAL_CREATED: 36 closed (with an MFE
    snapshot), 7 still open (5 with a stale snapshot, 2 with none); 5 ENTRYs lack targets."""
    events, tids = [], []
    for n in range(43):
        tid = f"20250105_{n // 6:02d}{n % 6:02d}00_{'BULLISH' if n % 2 else 'BEARISH'}"
        tids.append(tid)
        direction = "LONG" if n % 2 else "SHORT"
        t = T0 - 24 * H + n * 10 * timedelta(minutes=1)
        stop = 95.0 if direction == "LONG" else 105.0
        targets = None if n < 5 else ([105.0] if direction == "LONG" else [95.0])
        events.append(entry(tid, t + H, direction=direction, stop_loss=stop, targets=targets))
        if n < 36:
            events.append(event("MFE_UPDATE", tid, t + 2 * H, mfe=1.0, mae=0.5))
            events.append(event("EXIT", tid, t + 3 * H, exit_price=100.0, exit_reason="TARGET"))
        elif n < 41:
            events.append(event("MFE_UPDATE", tid, t + 2 * H, mfe=0.4, mae=0.2))
    append(engine, *events)
    return tids


def test_seed_scenario_signal_created_fills_all_but_expected_gaps(engine: sa.Engine) -> None:
    tids = _seed_day(engine)
    before = run_sync(engine, CONFIG, NOW, "before").health
    assert before.gap_breakdown["no_htf_alignment"] == 43
    assert before.gap_breakdown["no_confirmation_time"] == 43
    assert before.gap_breakdown["no_signal_created"] == 43
    assert before.gap_breakdown["no_targets"] == 0  # the backend calculated them (Tier 2)
    assert before.gap_breakdown["no_mfe_update"] == 7
    assert before.gap_breakdown["no_mae"] == 2
    assert before.manual_intervention > 0 and before.signal_coverage == 0.0
    assert before.health_score < 60
    # the indicator starts sending SIGNAL_CREATED (replayed for the day)
    append(
        engine,
        *[
            created(
                t,
                T0 - 24 * H + n * 10 * timedelta(minutes=1),
                direction="BULLISH" if n % 2 else "BEARISH",
            )
            for n, t in enumerate(tids)
        ],
    )
    after = run_sync(engine, CONFIG, NOW, "after").health
    nonzero = {k: v for k, v in after.gap_breakdown.items() if v}
    assert nonzero == {"no_mfe_update": 7, "no_mae": 2}
    assert after.kind_breakdown == {"actionable": 0, "expected": 9}
    assert after.manual_intervention == 0
    assert after.signal_coverage == 1.0
    assert after.health_score >= 90
    assert after.data_confidence is not None and after.data_confidence > 0.95
    text = format_health(after)
    assert (
        "Total Gaps: 9" in text and "no_mfe_update:" in text and "Manual Intervention: None" in text
    )
    with engine.connect() as conn:
        assert latest_health(conn) == after.as_api()


def test_health_report_of_an_empty_registry(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        report = health_report(conn, NOW, CONFIG.hybrid_sync)
    assert (report.signals, report.total_gaps, report.health_score) == (0, 0, 100.0)
    assert report.signal_coverage is None and report.data_confidence is None
    assert set(report.as_api()) == {
        "total_gaps",
        "health_score",
        "gap_breakdown",
        "signal_coverage",
        "data_confidence",
        "manual_intervention",
        "signals",
    }


def _state(engine: sa.Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(signals).order_by(signals.c.signal_id)).mappings().all()
        registry_rows = [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]
        gaps = sorted(
            (r.signal_id, r.gap_type)
            for r in conn.execute(sa.select(signal_gaps).where(signal_gaps.c.resolved_at.is_(None)))
        )
        audit = sorted(
            (r.signal_id, r.field, str(r.new_value))
            for r in conn.execute(sa.select(sync_audit_log))
        )
    return registry_rows, gaps, audit


@pytest.mark.postgres
def test_concurrent_syncs_on_postgres_equal_one(pg_url: str, second_pg_url: str) -> None:
    engines = [make_engine(pg_url), make_engine(second_pg_url)]
    try:
        for en in engines:
            tids = _seed_day(en)
            append(en, *[created(t, T0 - 30 * H) for t in tids[::2]])
        single = run_sync(engines[1], CONFIG, NOW, "single")
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def one(run_id: str) -> None:
            try:
                barrier.wait()
                run_sync(engines[0], CONFIG, NOW, run_id, lock_wait_seconds=60)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(f"c{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert single.reconcile.fields_changed > 0
        assert _state(engines[0]) == _state(engines[1])
    finally:
        for en in engines:
            en.dispose()


def test_a_second_sync_waits_then_gives_up_cleanly(engine: sa.Engine) -> None:
    with sync_lock(engine, "holder", wait_seconds=1):
        with pytest.raises(SyncBusy):
            run_sync(engine, CONFIG, NOW, "second", lock_wait_seconds=0.3)
    run_sync(engine, CONFIG, NOW, "third", lock_wait_seconds=1)  # released: runs
