"""The signals registry as a fold of the log: order, cancellations, re-open, rebuild."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import sqlalchemy as sa
from hybrid_sync_support import CONFIG, T0, append, created, entry, event, registry

from alphapulse_dagster.db.tables import signal_events, signals, sync_audit_log
from alphapulse_dagster.sync.fold_resume import EventSpan, can_resume, span_of
from alphapulse_dagster.sync.lifecycle import PROJECTED_COLUMNS, EventRow, fold
from alphapulse_dagster.sync.projection import project_log, read_cursor, rebuild_registry
from alphapulse_dagster.sync.sync_cycle import run_sync

TID = "20250106_120000_BULLISH"
SID = f"BTCUSDT:{TID}"
H = timedelta(hours=1)


def _rows(*new_events) -> list[EventRow]:  # type: ignore[no-untyped-def]
    return [
        EventRow(
            i,
            e.source,
            e.event_type,
            e.signal_id,
            e.trade_id,
            e.symbol,
            e.event_time,
            dict(e.payload),
        )
        for i, e in enumerate(new_events, start=1)
    ]


def test_fold_is_independent_of_arrival_order() -> None:
    events = _rows(
        created(TID, T0),
        entry(TID, T0 + H),
        event("MFE_UPDATE", TID, T0 + 2 * H, mfe=0.5, mae=0.1),
        event("EXIT", TID, T0 + 3 * H, exit_price=110.0, exit_reason="TARGET"),
    )
    results = [fold(list(order)) for order in itertools.permutations(events)]
    assert all(r == results[0] for r in results)
    assert results[0]["status"] == "CLOSED"
    assert results[0]["status_reason"] == "TARGET"
    assert results[0]["exit_price"] == 110.0


def _random_history(rng: random.Random) -> list[EventRow]:
    kinds = [
        ("SIGNAL_CREATED", {"direction": "BULLISH", "timeframe": "60"}),
        ("ENTRY", {"direction": "LONG", "entry_price": 100.0, "stop_loss": 95.0}),
        ("MFE_UPDATE", {"mfe": 0.5}),
        ("EXIT", {"exit_price": 101.0, "exit_reason": "STOP"}),
        ("CANCELLED", {"reason": "invalidated"}),
        ("CANCELLED", {"reason": "EXPIRED", "inferred": True}),
    ]
    rows = []
    for i in range(1, rng.randint(1, 7) + 1):
        kind, payload = rng.choice(kinds)
        source = "alphapulse" if payload.get("inferred") else rng.choice(("tradingview", "mtf"))
        at = T0 + rng.randint(0, 6) * H
        trade_id = TID if rng.random() < 0.7 else None
        rows.append(EventRow(i, source, kind, SID, trade_id, "BTCUSDT", at, dict(payload)))
    return rows


def _span(history: list[EventRow], stored: dict, after: int) -> EventSpan:  # type: ignore[type-arg]
    """``span_of`` over the events ``_recent_events`` would load for this history."""
    floor = min(stored["last_event_id"], after)
    return span_of(stored, [e for e in history if e.event_id > floor], after)


def test_resuming_the_fold_from_the_stored_row_equals_a_full_fold() -> None:
    rng = random.Random(11)
    resumed = early_created = 0
    for _ in range(3000):
        history = _random_history(rng)
        for k in range(1, len(history)):
            stored = fold(history[:k])
            if not can_resume(stored, _span(history, stored, after=k)):
                continue
            resumed += 1
            # a first SIGNAL_CREATED arriving after events it is timed before
            early_created += any(
                e.event_type == "SIGNAL_CREATED" and e.event_time < stored["folded_until"]
                for e in history[k:]
            )
            assert fold(history[k:], resume=stored) == fold(history), history
        assert fold(history)["folded_until"] == max(e.event_time for e in history)
    assert resumed > 1000  # the shortcut is exercised, in every kind of history
    assert early_created > 200


def test_span_of_a_stored_row() -> None:
    """New events are those past the row's last_event_id; one at or below it but past the
    cursor is unseen (the row may not hold it); the folded time is the row's own."""
    history = [
        EventRow(i, "tradingview", "MFE_UPDATE", SID, TID, "BTCUSDT", T0 + i * H, {"mfe": 0.1})
        for i in range(1, 8)
    ]
    stored = {"last_event_id": 5, "folded_until": T0 + 5 * H}
    assert span_of(stored, history[5:], after=5) == EventSpan(T0 + 5 * H, T0 + 6 * H, False)
    # cursor at 3, row holds up to 5 (an inferred expiry folded past the cursor)
    assert span_of(stored, history[3:], after=3) == EventSpan(T0 + 5 * H, T0 + 6 * H, True)
    # the row is behind the cursor: every recent event is new
    assert span_of(stored, history[5:], after=6) == EventSpan(T0 + 5 * H, T0 + 6 * H, False)
    assert span_of(stored, [], after=5).fresh_from is None


def test_entry_before_signal_created_yields_one_confirmed_row(engine: sa.Engine) -> None:
    append(engine, entry(TID, T0 + H))  # arrives first
    with engine.begin() as conn:
        project_log(conn, T0 + 2 * H)
    assert registry(engine, SID)["status"] == "CONFIRMED"
    append(engine, created(TID, T0))  # the SIGNAL_CREATED lands late
    with engine.begin() as conn:
        project_log(conn, T0 + 2 * H)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(signals)).scalar() == 1
    row = registry(engine, SID)
    assert row["status"] == "CONFIRMED"
    assert row["created_at"] == T0 and row["confirmed_at"] == T0 + H
    assert row["entry_price"] == 100.0 and row["stop_loss"] == 95.0
    assert row["field_provenance"]["entry_price"]["source"].startswith("ENTRY#")


def test_pending_expires_by_inference_and_explicit_cancel_outranks(engine: sa.Engine) -> None:
    append(engine, created(TID, T0))  # 1h signal, window 12 bars
    run_sync(engine, CONFIG, T0 + 11 * H, "r1")
    assert registry(engine, SID)["status"] == "PENDING"
    run_sync(engine, CONFIG, T0 + 13 * H, "r2")
    row = registry(engine, SID)
    assert (row["status"], row["status_reason"]) == ("CANCELLED", "EXPIRED")
    assert row["status_confidence"] < 1.0
    assert row["cancelled_at"] == T0 + 12 * H  # the expiry moment, not the sync time
    # a rerun appends no second inferred event
    run_sync(engine, CONFIG, T0 + 14 * H, "r3")
    with engine.connect() as conn:
        inferred = conn.execute(
            sa.select(sa.func.count()).where(signal_events.c.event_type == "CANCELLED")
        ).scalar()
    assert inferred == 1
    # the indicator's explicit CANCELLED arrives: it wins, confidence 1.0
    append(engine, event("CANCELLED", TID, T0 + 5 * H, reason="invalidated"))
    run_sync(engine, CONFIG, T0 + 14 * H, "r4")
    row = registry(engine, SID)
    assert (row["status"], row["status_reason"], row["status_confidence"]) == (
        "CANCELLED",
        "INVALIDATED",
        1.0,
    )
    assert row["cancelled_at"] == T0 + 5 * H


def test_explicit_cancel_is_never_replaced_by_inference(engine: sa.Engine) -> None:
    append(engine, created(TID, T0), event("CANCELLED", TID, T0 + H, reason="user"))
    run_sync(engine, CONFIG, T0 + 30 * H, "r1")
    row = registry(engine, SID)
    assert (row["status_reason"], row["status_confidence"]) == ("USER", 1.0)
    with engine.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count()).where(signal_events.c.source == "alphapulse")
        ).scalar()
    assert n == 0


def test_late_entry_reopens_an_inferred_expiry_and_is_audited(engine: sa.Engine) -> None:
    append(engine, created(TID, T0))
    run_sync(engine, CONFIG, T0 + 13 * H, "r1")
    assert registry(engine, SID)["status"] == "CANCELLED"
    append(engine, entry(TID, T0 + 12 * H + timedelta(minutes=30)))  # after the expiry
    run_sync(engine, CONFIG, T0 + 14 * H, "r2")
    row = registry(engine, SID)
    assert row["status"] == "CONFIRMED" and row["cancelled_at"] is None
    assert row["status_confidence"] == 1.0
    with engine.connect() as conn:
        audit = (
            conn.execute(
                sa.select(sync_audit_log).where(
                    sync_audit_log.c.sync_run_id == "r2", sync_audit_log.c.field == "status"
                )
            )
            .mappings()
            .all()
        )
    assert len(audit) == 1
    assert audit[0]["new_value"] == {"status": "CONFIRMED"}
    assert "re-opens" in audit[0]["reason"]


def test_entry_timed_before_the_expiry_wins_even_when_it_arrives_after(engine: sa.Engine) -> None:
    append(engine, created(TID, T0))
    run_sync(engine, CONFIG, T0 + 13 * H, "r1")
    append(engine, entry(TID, T0 + 3 * H))  # filled long before the window ended
    run_sync(engine, CONFIG, T0 + 14 * H, "r2")
    row = registry(engine, SID)
    assert row["status"] == "CONFIRMED" and row["confirmed_at"] == T0 + 3 * H


def _stream():  # type: ignore[no-untyped-def]
    """A day of mixed lifecycles, in three arrival batches (some out of order)."""
    batches = [[], [], []]
    for n in range(12):
        tid = f"20250106_{10 + n:02d}0000_{'BULLISH' if n % 2 else 'BEARISH'}"
        t = T0 + n * H
        direction = "LONG" if n % 2 else "SHORT"
        stop = 95.0 if direction == "LONG" else 105.0
        kind = n % 4
        batches[0].append(created(tid, t, direction=direction))
        if kind in (1, 2):
            batches[2 if n % 3 == 0 else 1].append(
                entry(tid, t + H, direction=direction, stop_loss=stop)
            )
        if kind == 2:
            batches[2].append(event("MFE_UPDATE", tid, t + 2 * H, mfe=0.7, mae=0.2))
            batches[1].append(event("EXIT", tid, t + 3 * H, exit_price=101.0, exit_reason="STOP"))
        if kind == 3:
            batches[1].append(event("CANCELLED", tid, t + H, reason="invalidated"))
    return batches


def _projected(engine: sa.Engine) -> dict[str, dict]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(signals)).mappings().all()
    return {r["signal_id"]: dict(r) for r in rows}


def test_incremental_projection_equals_rebuild(engine: sa.Engine) -> None:
    batches = _stream()
    for i, batch in enumerate(batches):
        append(engine, *batch)
        run_sync(engine, CONFIG, T0 + (10 + 10 * i) * H, f"r{i}")  # also infers expiries
    incremental = _projected(engine)
    with engine.begin() as conn:
        rebuild_registry(conn, T0 + 40 * H)
    rebuilt = _projected(engine)
    assert incremental.keys() == rebuilt.keys()
    for signal_id, row in incremental.items():
        other = rebuilt[signal_id]
        for column in PROJECTED_COLUMNS:
            assert row[column] == other[column], (signal_id, column)
        # sync-owned columns survive the rebuild
        for column in ("htf_alignment", "session", "signal_time", "confirmation_time", "mae"):
            assert row[column] == other[column], (signal_id, column)
        assert row["field_provenance"] == other["field_provenance"]
    statuses = {r["status"] for r in incremental.values()}
    assert {"CONFIRMED", "CLOSED", "CANCELLED"} <= statuses  # every lifecycle is exercised


def test_rebuild_to_an_earlier_head_leaves_the_cursor_there(engine: sa.Engine) -> None:
    """A rebuild told a safe head below the newest id (a writer still in flight) leaves the
    cursor at that head; the next projection re-folds what lies past it, to the same
    rows as a plain rebuild."""
    for batch in _stream():
        append(engine, *batch)
    with engine.connect() as conn:
        ids = sorted(conn.execute(sa.select(signal_events.c.event_id)).scalars())
    head = ids[len(ids) // 2]
    with engine.begin() as conn:
        result = rebuild_registry(conn, T0 + 30 * H, head=head)
        assert result.last_event_id == head
        assert read_cursor(conn) == head
    with engine.begin() as conn:
        caught_up = project_log(conn, T0 + 30 * H)
    assert caught_up.last_event_id == ids[-1]
    assert caught_up.signals_touched > 0  # the signals with events past ``head``
    after = _projected(engine)
    with engine.begin() as conn:
        rebuild_registry(conn, T0 + 30 * H)
    assert _projected(engine) == after


def test_rebuild_gives_identical_whole_rows_without_sync(engine: sa.Engine) -> None:
    for batch in _stream():
        append(engine, *batch)
        with engine.begin() as conn:
            project_log(conn, T0 + 30 * H)
    before = _projected(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(signals))
        rebuild_registry(conn, T0 + 30 * H)
    after = _projected(engine)
    assert before == after
