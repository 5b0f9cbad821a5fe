"""A sync cycle reads the registry rows in scope once and keeps them current as its steps
write (``registry_rows.RegistryRows``). After every kind of cycle the cached rows must equal
the stored ones, column by column — else a later step would have decided on stale data."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hybrid_sync_support import CONFIG, T0, append, created, entry, event, load_candles

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.db.tables import signal_gaps, signals, sync_audit_log
from alphapulse_dagster.sync.events import NewEvent
from alphapulse_dagster.sync.lifecycle import EventRow, KnownEvents
from alphapulse_dagster.sync.registry_rows import RegistryRows, read_rows
from alphapulse_dagster.sync.sync_cycle import SyncRequest, run_sync

H = timedelta(hours=1)
NOW = T0 + timedelta(days=3)


def _cycle(
    engine: sa.Engine, now: datetime, sync_run_id: str, request: SyncRequest = SyncRequest()
) -> RegistryRows:
    report = run_sync(engine, CONFIG, now, sync_run_id, request)
    with engine.connect() as conn:
        assert report.rows.stale(conn) == {}
    assert report.reconcile.signals_seen > 0
    return report.rows


def _first_events(engine: sa.Engine) -> tuple[list[NewEvent], list[tuple[str, datetime]]]:
    rng = random.Random(5)
    start = T0 - timedelta(days=2)
    # hourly BTCUSDT candles over the whole period: Tier 1 measures (and re-measures) trades
    bars = []
    for _ in range(24 * 6):
        low = 90.0 + rng.random() * 5
        bars.append((low + 2, low + 4 + rng.random() * 4, low, low + 3))
    load_candles(engine, "BTCUSDT", "1h", start, bars)
    trades = [(f"{start + n * 3 * H:%Y%m%d_%H%M%S}_LONG_{n}", start + n * 3 * H) for n in range(24)]
    first = []
    for n, (tid, at) in enumerate(trades):
        if n % 4:
            first.append(created(tid, at))
        if n % 3:  # a third stay PENDING: some expire
            first.append(entry(tid, at + H))
        if n % 5 == 0:
            first.append(event("MFE_UPDATE", tid, at + 2 * H, mfe=0.4, mae=0.1))
        if n % 6 == 1:
            first.append(event("EXIT", tid, at + 5 * H, exit_price=101.0, exit_reason="TARGET"))
    return first, trades


def _later_events(trades: list[tuple[str, datetime]]) -> list[NewEvent]:
    """Resumable MFE updates, late SIGNAL_CREATED (full re-fold), an explicit cancel, late
    ENTRYs re-opening inferred expiries, exits."""
    later = []
    for n, (tid, at) in enumerate(trades):
        if n % 4 == 0:
            later.append(created(tid, at - H))
        elif n % 3 == 0:
            later.append(entry(tid, NOW - 2 * H))
        elif n % 5 == 2:
            later.append(event("MFE_UPDATE", tid, NOW - H, mfe=0.9, mae=0.3))
        elif n % 7 == 1:
            later.append(event("EXIT", tid, NOW - H, exit_price=99.0, exit_reason="STOP"))
    later.append(event("CANCELLED", trades[3][0], NOW - H, reason="user"))
    return later


def test_the_cycle_cache_equals_the_database_after_every_step(engine: sa.Engine) -> None:
    first, trades = _first_events(engine)
    append(engine, *first)
    # first cycle: the projection inserts every row (inserts are not cached; read later)
    cache = _cycle(engine, now=NOW, sync_run_id="c1")
    assert len(cache) == len({e.signal_id for e in first}) == 23  # trade 12 has no event

    later = _later_events(trades)
    append(engine, *later)
    ids = sorted({e.signal_id for e in later})
    cache = _cycle(engine, now=NOW + H, sync_run_id="c2", request=SyncRequest(ids))
    assert len(cache) >= len(ids)

    # scheduled cycles (time-driven scopes), then a full one
    _cycle(engine, now=NOW + 30 * H, sync_run_id="c3")
    _cycle(engine, now=NOW + 31 * H, sync_run_id="c4", request=SyncRequest(full=True))


def test_past_its_limit_the_cache_reads_without_keeping(engine: sa.Engine) -> None:
    trades = [(f"20250106_{n:02d}0000_LONG_{n}", T0 + n * H) for n in range(6)]
    append(engine, *(created(tid, at) for tid, at in trades))
    run_sync(engine, CONFIG, NOW, "warm")
    ids = [f"BTCUSDT:{tid}" for tid, _ in trades]
    cache = RegistryRows(limit=4)
    with engine.connect() as conn:
        assert set(cache.load(conn, ids[:3])) == set(ids[:3])
        assert len(cache) == 3
        rows = cache.load(conn, ids)  # 3 more would pass the limit: read, not kept
        assert set(rows) == set(ids) and len(cache) == 3
        assert rows[ids[0]] is cache.load(conn, ids[:1])[ids[0]]


def _state(engine: sa.Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(signals).order_by(signals.c.signal_id)).mappings().all()
        gaps = conn.execute(
            sa.select(signal_gaps.c.signal_id, signal_gaps.c.gap_type, signal_gaps.c.resolved_at)
        ).all()
        audit = conn.execute(
            sa.select(
                sync_audit_log.c.signal_id,
                sync_audit_log.c.field,
                sync_audit_log.c.new_value,
                sync_audit_log.c.tier,
                sync_audit_log.c.old_confidence,
            )
        ).all()
    return (
        [{k: v for k, v in r.items() if k != "updated_at"} for r in rows],
        sorted(map(tuple, gaps), key=repr),
        sorted(map(tuple, audit), key=repr),
    )


def _two_sqlite_databases(tmp_path: Path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / f'db{n}.db'}" for n in range(2)]
    for url in urls:
        upgrade(url)
    return urls


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_incremental_scope_misses_nothing_a_rescan_of_every_signal_finds(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A cycle plans only the signals whose inputs may have changed (new events, the
    sensor's ids, what changes with time). The same cycles with ``rescan`` — every signal
    planned — must leave the same registry, gaps and audit trail: nothing outside the
    scope had anything to write."""
    if backend == "postgres":
        urls = [request.getfixturevalue("pg_url"), request.getfixturevalue("second_pg_url")]
    else:
        urls = _two_sqlite_databases(tmp_path)
    scoped, everything = (make_engine(url) for url in urls)
    try:
        trades: list[tuple[str, datetime]] = []
        for en in (scoped, everything):
            first, trades = _first_events(en)
            append(en, *first)
        later_ids = sorted({e.signal_id for e in _later_events(trades)})
        cycles: list[dict[str, Any]] = [
            {"now": NOW},
            {"now": NOW + H, "signal_ids": later_ids},
            {"now": NOW + 30 * H},
            {"now": NOW + 31 * H, "full": True},
        ]
        for n, cycle in enumerate(cycles):
            if n == 1:
                for en in (scoped, everything):
                    append(en, *_later_events(trades))
            now, ids, full = cycle["now"], cycle.get("signal_ids"), cycle.get("full", False)
            report = run_sync(scoped, CONFIG, now, f"s{n}", SyncRequest(ids, full))
            wide = run_sync(everything, CONFIG, now, f"e{n}", SyncRequest(ids, full, True))
            assert _state(scoped) == _state(everything), n
            assert report.scope <= wide.scope
            with scoped.connect() as conn:
                assert report.rows.stale(conn) == {}
            if n < 2:  # the projected rows were reconciled in the cycle that folded them
                assert report.reconcile.fields_changed > 0
    finally:
        scoped.dispose()
        everything.dispose()


def test_known_events_tell_the_latest_of_a_type_only_when_they_can() -> None:
    def ev(event_id: int, kind: str) -> EventRow:
        return EventRow(event_id, "tv", kind, "S", "t", "BTCUSDT", T0, {"n": event_id})

    fresh = KnownEvents([ev(7, "MFE_UPDATE"), ev(9, "MFE_UPDATE")], complete=False)
    assert fresh.latest("MFE_UPDATE") == ev(9, "MFE_UPDATE")  # newer than any folded one
    assert fresh.latest("SIGNAL_CREATED") is False  # may be among the folded: ask the database
    everything = KnownEvents([ev(3, "SIGNAL_CREATED"), ev(5, "ENTRY")], complete=True)
    assert everything.latest("SIGNAL_CREATED") == ev(3, "SIGNAL_CREATED")
    assert everything.latest("MFE_UPDATE") is None  # it has none


def test_read_rows_equals_the_orm_read_value_for_value(engine: sa.Engine) -> None:
    """On Postgres ``read_rows`` reads through psycopg's binary protocol, not SQLAlchemy:
    every column of every row (times, JSON, booleans, NULLs) must come back the same."""
    first, _ = _first_events(engine)
    append(engine, *first)
    run_sync(engine, CONFIG, NOW, "r1")
    with engine.connect() as conn:
        by_orm = {
            r["signal_id"]: dict(r) for r in conn.execute(sa.select(signals)).mappings().all()
        }
        fast = read_rows(conn, sorted(by_orm))
    assert len(fast) == len(by_orm) == 23
    for signal_id, row in by_orm.items():
        got = fast[signal_id]
        assert got == row, signal_id
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in row.items()}
    assert any(r["stop_hit"] is not None for r in fast.values())  # booleans were read
    assert all(r["updated_at"].utcoffset() == timedelta(0) for r in fast.values())
