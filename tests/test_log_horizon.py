"""The log's safe head: cursors over ``signal_events`` never pass an id that is still
uncommitted (Postgres sequences hand ids out before commit)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from hybrid_sync_support import T0, append, created, registry

from alphapulse_dagster.config import AppConfig, HybridSyncConfig
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_events, signals
from alphapulse_dagster.sync.events import NewEvent, append_events
from alphapulse_dagster.sync.log_horizon import safe_head
from alphapulse_dagster.sync.projection import LIFECYCLE_CURSOR, read_cursor
from alphapulse_dagster.sync.sync_cycle import RECONCILE_CURSOR, run_sync
from resources import ConfigResource, DatabaseResource
from sensors.hybrid_sync import signal_created_sensor

H = timedelta(hours=1)
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "config")
# the barrier gives up quickly while the test holds a writer open
SHORT = AppConfig(hybrid_sync=HybridSyncConfig(log_barrier_timeout_ms=200))
PATIENT = AppConfig(hybrid_sync=HybridSyncConfig(log_barrier_timeout_ms=20_000))


def sid(trade_id: str) -> str:
    return f"BTCUSDT:{trade_id}"


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


class OpenWriter:
    """A transaction that appended events and has not committed: it holds their ids."""

    def __init__(self, engine: sa.Engine, *events: NewEvent) -> None:
        self.conn = engine.connect()
        self.conn.begin()
        self.ids = [a.event_id for a in append_events(self.conn, list(events), T0)]

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def open_writers() -> Iterator[list[OpenWriter]]:
    writers: list[OpenWriter] = []
    yield writers
    for writer in writers:
        writer.close()


def _max_event_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(signal_events.c.event_id))).scalar() or 0)


def _registered(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(signals.c.signal_id)).scalars())


def _cursors(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {n: read_cursor(conn, n) for n in (LIFECYCLE_CURSOR, RECONCILE_CURSOR)}


def test_safe_head_is_the_max_event_id_when_no_writer_is_in_flight(engine: sa.Engine) -> None:
    assert safe_head(engine) == 0  # empty log
    append(engine, created("20250106_120000_LONG", T0), created("20250106_130000_LONG", T0))
    assert safe_head(engine) == _max_event_id(engine) == 2
    with pytest.raises(ValueError):
        safe_head(engine, lock_timeout_ms=0)  # 0 would mean "wait forever" on Postgres


@pytest.mark.postgres
def test_projection_never_passes_an_uncommitted_event(
    pg_engine: sa.Engine, open_writers: list[OpenWriter], caplog: pytest.LogCaptureFixture
) -> None:
    """T1 holds id x uncommitted while T2 commits y > x: projecting up to max(event_id)
    would advance the cursor to y and never fold x once T1 commits."""
    writer = OpenWriter(pg_engine, created("20250106_120000_LONG", T0))
    open_writers.append(writer)
    (x,) = writer.ids
    append(pg_engine, created("20250106_130000_LONG", T0))
    y = _max_event_id(pg_engine)
    assert y > x

    # the barrier waits for T1, times out, and the cycle does not advance (nor fail)
    with caplog.at_level(logging.WARNING, logger="alphapulse_dagster.sync.log_horizon"):
        started = time.monotonic()
        first = run_sync(pg_engine, SHORT, T0 + H, "r1")
        waited = time.monotonic() - started
    assert first.projection.last_event_id == 0
    assert first.projection.signals_touched == 0
    assert _cursors(pg_engine)[LIFECYCLE_CURSOR] == 0
    assert _registered(pg_engine) == set()
    assert "barrier" in caplog.text and waited >= 0.2

    writer.commit()
    second = run_sync(pg_engine, SHORT, T0 + H, "r2")
    assert second.projection.last_event_id == y
    assert _cursors(pg_engine)[LIFECYCLE_CURSOR] == y == _max_event_id(pg_engine)
    assert _registered(pg_engine) == {sid("20250106_120000_LONG"), sid("20250106_130000_LONG")}


@pytest.mark.postgres
def test_the_barrier_waits_for_an_inflight_writer_then_projects_everything(
    pg_engine: sa.Engine, open_writers: list[OpenWriter]
) -> None:
    writer = OpenWriter(pg_engine, created("20250106_120000_LONG", T0))
    open_writers.append(writer)
    append(pg_engine, created("20250106_130000_LONG", T0))
    y = _max_event_id(pg_engine)
    results: list[object] = []
    step = threading.Thread(
        target=lambda: results.append(run_sync(pg_engine, PATIENT, T0 + H, "r1"))
    )
    step.start()
    try:
        # the barrier is queued behind T1's ROW EXCLUSIVE lock
        waiting = sa.text(
            "SELECT count(*) FROM pg_locks WHERE relation = 'signal_events'::regclass "
            "AND mode = 'ShareLock' AND NOT granted"
        )
        deadline = time.monotonic() + 10
        with pg_engine.connect() as conn:
            while not conn.execute(waiting).scalar():
                assert time.monotonic() < deadline, "the barrier never waited for the writer"
                time.sleep(0.02)
        assert step.is_alive()
    finally:
        writer.commit()
        step.join(30)
    assert not step.is_alive() and len(results) == 1
    assert _cursors(pg_engine)[LIFECYCLE_CURSOR] == y
    assert _registered(pg_engine) == {sid("20250106_120000_LONG"), sid("20250106_130000_LONG")}
    with pg_engine.connect() as conn:  # the barrier's lock went with its transaction
        held = "SELECT count(*) FROM pg_locks WHERE relation = 'signal_events'::regclass"
        assert conn.execute(sa.text(held)).scalar() == 0


@pytest.mark.postgres
def test_reconcile_and_gap_cursors_never_pass_the_lifecycle_cursor(
    pg_engine: sa.Engine, open_writers: list[OpenWriter]
) -> None:
    """A registry row can hold events newer than the projection's cursor (the inferred
    expiries the cycle appends itself) while an older id is still uncommitted: the
    downstream cursors stop at the lifecycle cursor, so that signal is reconciled later."""
    expiring, late = "20250106_120000_LONG", "20250107_010000_LONG"
    append(pg_engine, created(expiring, T0))  # 1h signal: expires after 12 bars
    run_sync(pg_engine, SHORT, T0 + H, "r1")
    folded = _max_event_id(pg_engine)
    assert _cursors(pg_engine) == dict.fromkeys(_cursors(pg_engine), folded)

    writer = OpenWriter(pg_engine, created(late, T0 + 13 * H))  # holds an id, uncommitted
    open_writers.append(writer)
    (held,) = writer.ids
    report = run_sync(pg_engine, SHORT, T0 + 13 * H, "r2")  # barrier times out
    assert report.expired == [sid(expiring)]
    expiry_id = registry(pg_engine, sid(expiring))["last_event_id"]
    assert expiry_id > held > folded
    # the expired signal is still in both steps' scope, as before
    assert report.reconcile.signals_seen == 1 and report.gaps.signals_scanned == 1
    assert _cursors(pg_engine) == dict.fromkeys(_cursors(pg_engine), folded)

    writer.commit()
    report = run_sync(pg_engine, SHORT, T0 + 14 * H, "r3")
    assert _cursors(pg_engine) == dict.fromkeys(_cursors(pg_engine), expiry_id)
    row = registry(pg_engine, sid(late))
    assert row["status"] == "PENDING"
    assert row["session"] == "LONDON"  # reconciled: Tier 0 from its SIGNAL_CREATED
    assert row["health_score"] is not None  # and its gaps were scored
    assert report.reconcile.signals_seen == 2  # the late signal and the expired one again


@pytest.mark.postgres
def test_sensor_never_passes_an_uncommitted_signal_created(
    pg_url: str, pg_engine: sa.Engine, open_writers: list[OpenWriter]
) -> None:
    resources = {
        "database": DatabaseResource(url=pg_url),
        "app_config": ConfigResource(config_dir=CONFIG_DIR),
    }
    instance = dg.DagsterInstance.ephemeral()
    writer = OpenWriter(pg_engine, created("20250106_120000_LONG", T0))
    open_writers.append(writer)
    (x,) = writer.ids
    append(pg_engine, created("20250106_130000_LONG", T0))
    y = _max_event_id(pg_engine)

    held = signal_created_sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources=resources)
    )
    assert held.run_requests == [] and held.cursor is None  # skipped, cursor unchanged
    assert "writer" in (held.skip_message or "")

    writer.commit()
    data = signal_created_sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources=resources)
    )
    (request,) = data.run_requests
    assert request.run_key == f"signal_created:{x}-{y}"
    ids = request.run_config["ops"]["hybrid_sync_cycle"]["config"]["signal_ids"]
    assert ids == [sid("20250106_120000_LONG"), sid("20250106_130000_LONG")]
    assert json.loads(data.cursor) == {"last_event_id": y}
