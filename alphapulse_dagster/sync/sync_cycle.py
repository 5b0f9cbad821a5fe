"""One hybrid-sync cycle — the single code path of the Dagster job, the sensor's runs and
``alphapulse sync``.

Steps, in order (each also callable alone, which is what the Dagster assets do):

1. :func:`lifecycle_step` — catch the registry up with the log (``lifecycle`` cursor),
   then append inferred expiries for PENDING signals past their window and re-fold them.
2. :func:`reconcile_step` — tiered reconciliation of the signals in scope.
3. :func:`gap_step` — detect the open gaps of the signals in scope, persist differences
   and per-signal health scores.
4. :func:`health_step` — the system report, appended to ``signal_health_metrics``.

Scope — the signals whose inputs can have changed since the step last ran; a signal
outside it would reproduce its stored fields and gaps exactly (the steps are idempotent):

- always: every signal whose latest event is past the step's cursor (new events, also
  the inferred expiries of step 1), plus the given ``signal_ids`` (the sensor's batch);
- a scheduled cycle (no ids) and ``full`` add the inputs that change with time alone,
  selected in SQL over every signal: trades Tier 1 may re-measure (confirmed, not final,
  on a symbol with candles — :func:`reconcile.tier1_signal_ids`) and, for gaps, signals
  whose ``no_mfe_update`` window has just been crossed (:func:`gaps.time_driven_gap_ids`);
- the gap step also takes every signal the reconciliation changed since its last pass
  (each change has a ``sync_audit_log`` row; ``gaps_audit`` cursor);
- ``full`` also re-detects every signal whose ``health_score`` disagrees with its open
  gaps under the current weights (never scanned, or the config changed —
  :func:`gaps.stale_score_ids`).

So "full" still considers every signal, but as set-based predicates; only the signals
that can change are loaded into Python. Cost grows with changes, not with history.

Cycles never overlap: :func:`sync_lock` (Postgres advisory lock; SQLite lease row). Each
chunk of signals commits atomically — a signal's fields, provenance and audit rows land
together or not at all.

Writing each row once: :func:`run_sync` reads the rows in scope once
(:class:`~alphapulse_dagster.sync.registry_rows.RegistryRows`), and the rows the projection
changes are reconciled and their gaps detected *before* they are written — one ``UPDATE``
per row with the fold's, the reconciliation's and the health score's columns, the audit
and gap rows in the same transaction (``lifecycle_step``'s ``enrich``). The later steps
skip those rows unless the expiry step touched them. The Dagster assets call the steps
one by one with ``reconcile=False`` (each asset's metadata then describes its own step);
both ways write the same registry, gaps and audit trail (``tests/test_registry_rows.py``).

On Postgres the projection's writes go to a second connection in pipeline mode, part by
part, while the next part is planned (:func:`projection.project_log`); a row whose Tier 0
inputs did not change skips Tier 0 (:func:`reconcile.tier0_settled`).
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.engine import derived_write
from alphapulse_dagster.db.tables import sync_audit_log, sync_locks
from alphapulse_dagster.sync.cancellations import cancel_expired
from alphapulse_dagster.sync.gaps import (
    GapResult,
    plan_gap_rows,
    refresh_gaps,
    stale_score_ids,
    time_driven_gap_ids,
    write_gap_rows,
)
from alphapulse_dagster.sync.health import HealthReport, health_report
from alphapulse_dagster.sync.lifecycle import KnownEvents
from alphapulse_dagster.sync.log_horizon import log_head, safe_head, signals_after
from alphapulse_dagster.sync.projection import (
    Enrichment,
    ProjectionResult,
    project_log,
    read_cursor,
    write_cursor,
)
from alphapulse_dagster.sync.reconcile import (
    LatestEvent,
    ReconcileResult,
    plan_rows,
    reconcile,
    signals_audited_after,
    tier0_settled,
    tier1_signal_ids,
)
from alphapulse_dagster.sync.registry_rows import RegistryRows

log = logging.getLogger(__name__)

LOCK_NAME = "hybrid_sync"
# pg_advisory_lock key: a fixed 64-bit number ("ALPHSYNC")
PG_LOCK_KEY = 0x414C50485359_4E43 & 0x7FFFFFFFFFFFFFFF
SQLITE_LEASE = timedelta(minutes=10)
RECONCILE_CURSOR = "reconcile"
GAPS_CURSOR = "gaps"
# the gap pass also follows ``sync_audit_log`` (its ``last_event_id`` holds an audit_id)
GAPS_AUDIT_CURSOR = "gaps_audit"


class SyncBusy(RuntimeError):
    """Another sync holds the lock and did not release it within the wait."""


@contextmanager
def sync_lock(engine: Engine, holder: str, wait_seconds: float = 30.0) -> Iterator[None]:
    """Hold the hybrid-sync lock for the block; wait up to ``wait_seconds`` for it, then
    raise :class:`SyncBusy`. Postgres: a session advisory lock on a dedicated connection
    (released even if the process dies). SQLite: a lease row in ``sync_locks``."""
    deadline = time.monotonic() + wait_seconds
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            while True:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
                acquired = bool(got.scalar())
                conn.commit()
                if acquired:
                    break
                if time.monotonic() >= deadline:
                    raise SyncBusy("another hybrid sync is running (advisory lock held)")
                time.sleep(0.1)
            try:
                yield
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                    conn.commit()
                except DBAPIError as exc:
                    # the session died (e.g. Postgres restarted): the server released the
                    # session lock with it; don't let this hide the cycle's own error
                    log.warning("advisory unlock failed (%s); lock went with the session", exc)
        finally:
            conn.close()
        return

    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    while True:
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(insert(sync_locks).values(name=LOCK_NAME).on_conflict_do_nothing())
            taken = conn.execute(
                update(sync_locks)
                .where(
                    sync_locks.c.name == LOCK_NAME,
                    (sync_locks.c.holder.is_(None)) | (sync_locks.c.locked_until < now),
                )
                .values(holder=holder, locked_until=now + SQLITE_LEASE)
            ).rowcount
        if taken:
            break
        if time.monotonic() >= deadline:
            raise SyncBusy("another hybrid sync is running (lease held)")
        time.sleep(0.1)
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(
                update(sync_locks)
                .where(sync_locks.c.name == LOCK_NAME, sync_locks.c.holder == holder)
                .values(holder=None, locked_until=None)
            )


@dataclass
class LifecycleResult:
    projection: ProjectionResult
    expired: list[str] = field(default_factory=list)
    # the reconciliation and gap pass of the rows the projection wrote, done before
    # writing them
    reconciled: ReconcileResult = field(default_factory=ReconcileResult)
    gaps: GapResult = field(default_factory=GapResult)
    reconciled_ids: set[str] = field(default_factory=set)


@dataclass
class SyncReport:
    sync_run_id: str
    lifecycle: LifecycleResult
    reconcile: ReconcileResult
    gaps: GapResult
    health: HealthReport
    scope: int
    seconds: float


def lifecycle_step(
    engine: Engine,
    config: AppConfig,
    now: datetime,
    sync_run_id: str,
    signal_ids: Sequence[str] | None = None,
    full: bool = False,
    cache: RegistryRows | None = None,
    reconcile: bool = True,
) -> LifecycleResult:
    """Project new events, then expire PENDING signals past their window (of ``signal_ids``
    when given and not ``full``; else every PENDING signal).

    The rows the projection changes are reconciled and their gaps detected before they
    are written (``reconcile.plan_rows`` and ``gaps.plan_gap_rows`` as the fold's
    ``enrich``): each is written once — fields, provenance, health score — with its audit
    and gap rows, in the projection's transaction. :func:`reconcile_step` and
    :func:`gap_step` then skip them (``LifecycleResult.reconciled_ids``) unless they
    expired since.
    ``reconcile=False``: the projection alone (rows as the log has them)."""
    result = LifecycleResult(ProjectionResult(0, 0, 0, 0, 0))
    reconciled = 0  # the ``reconcile`` cursor, read in the projection's transaction

    def enrich(
        conn: Connection,
        rows: list[dict[str, Any]],
        known: Mapping[str, KnownEvents],
        before: Mapping[str, Mapping[str, Any]],
    ) -> Enrichment:
        result.reconciled_ids.update(r["signal_id"] for r in rows)
        settled = set()
        if not full:
            for row in rows:
                signal_id = row["signal_id"]
                if tier0_settled(before.get(signal_id), row, known.get(signal_id), reconciled):
                    settled.add(signal_id)
        # SIGNAL_CREATED events the reconciliation reads are the gap pass's too
        created: dict[str, LatestEvent | None] = {}
        updates, audits = plan_rows(
            conn, rows, now, sync_run_id, result.reconciled, known, created, settled
        )
        sync_config = config.hybrid_sync
        plan = plan_gap_rows(conn, rows, now, sync_run_id, sync_config, result.gaps, known, created)
        return Enrichment(
            [*updates, *plan.scores],
            audits,
            lambda conn: write_gap_rows(conn, plan, now, result.gaps),
        )

    # the safe head, in its own transaction before the projection's (log_horizon)
    head = safe_head(engine, config.hybrid_sync.log_barrier_timeout_ms)
    with derived_write(engine) as conn, _write_connection(engine) as writes:
        # barrier timed out: the cursor is its own head, nothing new is projected this time
        head = read_cursor(conn) if head is None else head
        reconciled = read_cursor(conn, RECONCILE_CURSOR)  # for tier0_settled
        result.projection = project_log(
            conn,
            now,
            sync_run_id,
            head,
            cache=cache,
            enrich=enrich if reconcile else None,
            writes=writes,
        )
    with derived_write(engine) as conn:
        scope = None if full or signal_ids is None else signal_ids
        result.expired = cancel_expired(conn, config, now, sync_run_id, scope, cache=cache)
    return result


@contextmanager
def _write_connection(engine: Engine) -> Iterator[Connection | None]:
    """The projection's write connection: on Postgres a second one, in a transaction of its
    own committed when the block ends — before the reading connection's, which only reads
    — so that its writes can run pipelined beside the reads
    (:func:`projection.project_log`). Elsewhere None: the reading connection writes too
    (SQLite has one writer)."""
    if engine.dialect.name != "postgresql":
        yield None
        return
    with derived_write(engine) as writes:
        yield writes


def _scope(
    engine: Engine,
    cursor_name: str,
    signal_ids: Sequence[str] | None,
    full: bool,
    time_driven: Callable[[Connection], Iterable[str]],
    full_extra: Callable[[Connection], Iterable[str]] | None = None,
    changed: Iterable[str] = (),
    done: Iterable[str] = (),
) -> tuple[list[str], int]:
    """The step's signals (see the module docstring), but those in ``done``, and the head
    its cursor may advance to."""
    with engine.connect() as conn:
        # the step's cursor advances to the projection's (safe) cursor, never further: a
        # registry row can hold newer events (inferred expiries) while an older id is still
        # uncommitted. The scope still reaches the newest event of the log (a signal whose
        # events are not folded yet is reconciled as the registry has it: a no-op or an
        # early fill; its events come in the next cycle).
        head = read_cursor(conn)
        ids = set(signals_after(conn, read_cursor(conn, cursor_name), log_head(conn)))
        ids.update(signal_ids or ())
        ids.update(changed)
        if signal_ids is None or full:
            ids.update(time_driven(conn))
        if full and full_extra is not None:
            ids.update(full_extra(conn))
    return sorted(ids.difference(done)), head


def _advance(engine: Engine, cursor_name: str, head: int, now: datetime) -> None:
    with derived_write(engine) as conn:
        if read_cursor(conn, cursor_name) < head:
            write_cursor(conn, head, now, cursor_name)


def reconcile_step(
    engine: Engine,
    now: datetime,
    sync_run_id: str,
    signal_ids: Sequence[str] | None = None,
    full: bool = False,
    cache: RegistryRows | None = None,
    done: Iterable[str] = (),
) -> ReconcileResult:
    """Reconcile the signals in scope, but those in ``done`` (reconciled at ``now`` by
    this cycle's projection and unchanged since)."""
    ids, head = _scope(engine, RECONCILE_CURSOR, signal_ids, full, tier1_signal_ids, done=done)
    result = reconcile(engine, ids, now, sync_run_id, cache=cache)
    _advance(engine, RECONCILE_CURSOR, head, now)
    return result


def gap_step(
    engine: Engine,
    config: AppConfig,
    now: datetime,
    sync_run_id: str,
    signal_ids: Sequence[str] | None = None,
    full: bool = False,
    cache: RegistryRows | None = None,
    done: Iterable[str] = (),
) -> GapResult:
    """Detect the gaps of the signals in scope, but those in ``done`` (detected at ``now``
    by this cycle's projection and unchanged since)."""
    # rows the reconciliation changed since the last gap pass: each change has an audit row
    with engine.connect() as conn:
        audit_head = int(conn.execute(select(func.max(sync_audit_log.c.audit_id))).scalar() or 0)
        audited = signals_audited_after(conn, read_cursor(conn, GAPS_AUDIT_CURSOR), audit_head)
    ids, head = _scope(
        engine,
        GAPS_CURSOR,
        signal_ids,
        full,
        lambda conn: time_driven_gap_ids(conn, now, config.hybrid_sync),
        lambda conn: stale_score_ids(conn, config.hybrid_sync),
        audited,
        done,
    )
    result = refresh_gaps(engine, ids, now, sync_run_id, config.hybrid_sync, cache=cache)
    _advance(engine, GAPS_CURSOR, head, now)
    _advance(engine, GAPS_AUDIT_CURSOR, audit_head, now)
    return result


def health_step(engine: Engine, config: AppConfig, now: datetime, sync_run_id: str) -> HealthReport:
    with derived_write(engine) as conn:
        return health_report(conn, now, config.hybrid_sync, sync_run_id, persist=True)


@contextmanager
def _without_gc_pauses() -> Iterator[None]:
    """Suspend the cyclic garbage collector for one cycle. A cycle allocates many short-
    lived, acyclic rows and JSON documents (freed by reference counting); they trigger
    full collections that walk the whole heap — ~15% of an incremental cycle. Restored
    (never left off) whatever happens."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_sync(
    engine: Engine,
    config: AppConfig,
    now: datetime,
    sync_run_id: str | None = None,
    signal_ids: Sequence[str] | None = None,
    full: bool = False,
    lock_wait_seconds: float = 30.0,
    cache: RegistryRows | None = None,
) -> SyncReport:
    """One whole cycle under the sync lock. Raises :class:`SyncBusy` when another cycle
    holds the lock for longer than ``lock_wait_seconds``.

    The steps share one :class:`RegistryRows` (``cache``, a fresh one if not given): the
    registry rows in scope are read once per cycle, not once per step."""
    run_id = sync_run_id or f"sync-{uuid.uuid4().hex[:12]}"
    rows = RegistryRows() if cache is None else cache
    started = time.perf_counter()
    with sync_lock(engine, run_id, lock_wait_seconds), _without_gc_pauses():
        lifecycle = lifecycle_step(engine, config, now, run_id, signal_ids, full, rows)
        scope_ids = None if signal_ids is None else [*signal_ids, *lifecycle.expired]
        done = lifecycle.reconciled_ids.difference(lifecycle.expired)
        reconciled = reconcile_step(engine, now, run_id, scope_ids, full, rows, done)
        reconciled.absorb(lifecycle.reconciled)
        gaps = gap_step(engine, config, now, run_id, scope_ids, full, rows, done)
        gaps.absorb(lifecycle.gaps)
        health = health_step(engine, config, now, run_id)
    seconds = time.perf_counter() - started
    log.info(
        "sync %s: %d signals projected, %d expired, %d fields changed, %d open gaps, "
        "health %.1f in %.2fs",
        run_id,
        lifecycle.projection.signals_touched,
        len(lifecycle.expired),
        reconciled.fields_changed,
        health.total_gaps,
        health.health_score,
        seconds,
    )
    return SyncReport(run_id, lifecycle, reconciled, gaps, health, gaps.signals_scanned, seconds)
