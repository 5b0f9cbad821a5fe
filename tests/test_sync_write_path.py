"""The projection's write path: pipelined writes on a second connection (Postgres), and
the Tier 0 short cut for resumed rows whose Tier 0 inputs did not change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hybrid_sync_support import CONFIG, T0, append, created, entry, event, registry

import alphapulse_dagster.sync.sync_cycle as sync_cycle
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signals, sync_audit_log, sync_cursors
from alphapulse_dagster.sync.lifecycle import EventRow, KnownEvents
from alphapulse_dagster.sync.projection import project_log
from alphapulse_dagster.sync.reconcile import tier0_settled
from alphapulse_dagster.sync.sync_cycle import SyncRequest, run_sync

H = timedelta(hours=1)
NOW = T0 + timedelta(days=2)
TID = "20250106_120000_LONG"
SIGNAL = f"BTCUSDT:{TID}"


def _before() -> dict[str, Any]:
    at = T0 + H
    held = {"tier": "0", "confidence": 1.0, "source": "SIGNAL_CREATED#1"}
    return {
        "last_event_id": 2,
        "htf_alignment": {"4h": "BULLISH"},
        "session": "LONDON",
        "market_state": "TRENDING",
        "signal_time": T0,
        "direction": "LONG",
        "entry_price": 100.0,
        "stop_loss": 95.0,
        "targets": [105.0, 110.0, 115.0],
        "confirmation_time": 3600.0,
        "confirmed_at": at,
        "field_provenance": {
            "htf_alignment": held,
            "targets": {"tier": "2", "confidence": 0.8, "source": "calc:1R/2R/3R"},
            "entry_price": {"tier": "event", "confidence": 1.0, "source": "ENTRY#2"},
        },
    }


def _event(event_id: int, event_type: str) -> EventRow:
    return EventRow(event_id, "tradingview", event_type, SIGNAL, TID, "BTCUSDT", NOW, {})


def test_tier0_is_settled_only_when_nothing_it_reads_changed() -> None:
    before = _before()
    mfe = KnownEvents([_event(3, "MFE_UPDATE")], complete=False)
    after = {**before, "last_event_id": 3}
    assert tier0_settled(before, after, mfe, reconciled_through=2)
    # the stored row was never reconciled (the cursor is behind its events)
    assert not tier0_settled(before, after, mfe, reconciled_through=1)
    # a new SIGNAL_CREATED: Tier 0 has a payload it has not seen
    new_created = KnownEvents([_event(3, "SIGNAL_CREATED")], complete=False)
    assert not tier0_settled(before, after, new_created, reconciled_through=2)
    # a re-fold from the whole history (fields may have been emptied)
    assert not tier0_settled(before, after, KnownEvents(mfe.events, True), 2)
    # the fold changed a value Tier 0 reads or writes, or how sure a field is
    assert not tier0_settled(before, {**after, "confirmed_at": NOW}, mfe, 2)
    assert not tier0_settled(before, {**after, "entry_price": None}, mfe, 2)
    surer = {**before["field_provenance"], "targets": {"tier": "event", "confidence": 1.0}}
    assert not tier0_settled(before, {**after, "field_provenance": surer}, mfe, 2)
    assert not tier0_settled(None, after, mfe, 2)


def _audit(engine: sa.Engine) -> list[tuple[Any, ...]]:
    columns = [c for c in sync_audit_log.c if c.name not in ("audit_id", "sync_run_id")]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(*columns))]


def _registry(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(signals)).mappings()]


def _history(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, short_cut: bool) -> list[bool]:
    """A trade whose targets come from Tier 2, then MFE updates, then a second
    SIGNAL_CREATED that carries targets (Tier 0 must still take them). Returns what
    :func:`tier0_settled` answered for each row the projection reconciled."""
    answers: list[bool] = []

    def settled(*args: Any) -> bool:
        answers.append(short_cut and tier0_settled(*args))
        return answers[-1]

    monkeypatch.setattr(sync_cycle, "tier0_settled", settled)
    append(engine, created(TID, T0), entry(TID, T0 + H))
    run_sync(engine, CONFIG, NOW, request=SyncRequest([SIGNAL]))
    for k in range(3):
        append(engine, event("MFE_UPDATE", TID, T0 + (2 + k) * H, mfe=0.5 + k, mae=0.2))
        run_sync(engine, CONFIG, NOW, request=SyncRequest([SIGNAL]))
    assert registry(engine, SIGNAL)["field_provenance"]["targets"]["tier"] == "2"
    append(engine, created(TID, T0 + 6 * H, targets=[104.0, 108.0]))
    run_sync(engine, CONFIG, NOW, request=SyncRequest([SIGNAL]))
    return answers


def _same_history_both_ways(
    fast: sa.Engine, slow: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        answers = _history(fast, patch, short_cut=True)
    with monkeypatch.context() as patch:
        _history(slow, patch, short_cut=False)
    # the three MFE updates took the short cut; the first fold and the new payload did not
    assert answers == [False, True, True, True, False]
    row = registry(fast, SIGNAL)
    assert row["targets"] == [104.0, 108.0]
    assert row["field_provenance"]["targets"]["tier"] == "0"
    keep = [c.name for c in signals.c if c.name != "updated_at"]
    assert [{c: r[c] for c in keep} for r in _registry(fast)] == [
        {c: r[c] for c in keep} for r in _registry(slow)
    ]
    assert _audit(fast) == _audit(slow)
    fast.dispose()
    slow.dispose()


def test_the_tier0_short_cut_writes_what_the_full_reconciliation_writes_sqlite(
    sqlite_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alphapulse_dagster.db.migrate import upgrade

    slow_url = f"sqlite:///{tmp_path / 'slow.db'}"
    upgrade(slow_url)
    _same_history_both_ways(make_engine(sqlite_url), make_engine(slow_url), monkeypatch)


@pytest.mark.postgres
def test_the_tier0_short_cut_writes_what_the_full_reconciliation_writes_postgres(
    pg_url: str, second_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _same_history_both_ways(make_engine(pg_url), make_engine(second_pg_url), monkeypatch)


def test_a_row_folded_but_never_reconciled_gets_tier0_on_its_next_event(
    engine: sa.Engine,
) -> None:
    # the projection alone (no reconciliation: a catch-up or a rebuild)
    append(engine, created(TID, T0), entry(TID, T0 + H))
    with engine.begin() as conn:
        project_log(conn, NOW)
    assert registry(engine, SIGNAL)["htf_alignment"] is None
    append(engine, event("MFE_UPDATE", TID, T0 + 2 * H, mfe=1.0, mae=0.1))
    run_sync(engine, CONFIG, NOW, request=SyncRequest([SIGNAL]))
    row = registry(engine, SIGNAL)
    assert row["htf_alignment"] == {"4h": "BULLISH", "1d": "NEUTRAL"}
    assert row["field_provenance"]["htf_alignment"]["tier"] == "0"


@pytest.mark.postgres
def test_a_failed_pipelined_write_leaves_registry_audit_and_cursor_as_they_were(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(pg_url)
    append(engine, created(TID, T0), entry(TID, T0 + H))
    run_sync(engine, CONFIG, NOW)
    before_rows, before_audit = _registry(engine), _audit(engine)
    with engine.connect() as conn:
        cursors = dict(
            conn.execute(sa.select(sync_cursors.c.name, sync_cursors.c.last_event_id)).all()
        )

    import alphapulse_dagster.sync.write_plan as write_plan

    real_insert = write_plan.insert_rows

    def broken_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if table is sync_audit_log:  # a NOT NULL column left empty: fails on the server
            rows = [*rows, {**rows[0], "field": None}]
        real_insert(conn, table, rows)

    monkeypatch.setattr(write_plan, "insert_rows", broken_insert)
    append(engine, event("MFE_UPDATE", TID, T0 + 2 * H, mfe=1.0, mae=0.1))
    with pytest.raises(psycopg.errors.NotNullViolation):
        run_sync(engine, CONFIG, NOW)
    assert _registry(engine) == before_rows
    assert _audit(engine) == before_audit
    with engine.connect() as conn:
        after = dict(
            conn.execute(sa.select(sync_cursors.c.name, sync_cursors.c.last_event_id)).all()
        )
    assert after == cursors
    # the next cycle catches up
    monkeypatch.setattr(write_plan, "insert_rows", real_insert)
    run_sync(engine, CONFIG, NOW)
    assert registry(engine, SIGNAL)["mfe"] == 1.0
    engine.dispose()
