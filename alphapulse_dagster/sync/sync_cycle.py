"""One hybrid-sync cycle — the one code path of the Dagster job (its schedule and sensor
runs) and of ``alphapulse sync``: :func:`run_sync`.

Each chunk of signals goes through the same pipeline (:func:`plan_chunk`): read the rows
→ fold their new events (``projection.fold_chunk``) → load what the tiers and the gap
rules read (``signal_facts.load_facts``) → reconcile (``reconcile.reconcile_rows``) →
detect gaps and scores (``gaps.plan_gaps``) → one :class:`~alphapulse_dagster.sync.
write_plan.ChunkPlan`, written by :func:`~alphapulse_dagster.sync.write_plan.write_plan`.
Every row is written once per cycle, with all its columns; its audit and gap rows go in
the same transaction.

A cycle runs three passes over that pipeline, under the sync lock (:mod:`sync_lock`):

1. **projection** — the signals with events past the ``lifecycle`` cursor, up to the
   log's safe head (:mod:`log_horizon`). On Postgres the writes go to a second
   connection in pipeline mode while the next chunk is planned; one transaction with the
   cursor.
2. **expiry** — inferred expiries appended for PENDING signals past their window (of the
   given ids, else all), and those signals re-folded (``cancellations.py``).
3. **catch-up** — the signals whose inputs changed without a new event of their own:

   - every signal with an event past the ``reconcile`` cursor, plus the given
     ``signal_ids`` (the sensor's batch);
   - a scheduled cycle (no ids) and ``full`` add what changes with time alone, selected
     in SQL: trades Tier 1 may re-measure (:func:`reconcile.tier1_signal_ids`) and the
     time-driven gaps that are due or no longer due (:func:`gaps.time_driven_gap_ids`,
     from the gap rules' SQL predicates);
   - ``full`` adds the signals whose score disagrees with their open gaps under the
     current weights (:func:`gaps.stale_score_ids`);
   - ``rescan`` adds every signal: the gap rules run again on settled signals too (after
     a rule or a kind changed).

   One transaction per chunk. Cost grows with changes, not with history.

A row the projection folded whose Tier 0 inputs did not change skips reading its
SIGNAL_CREATED payload (:func:`reconcile.tier0_settled`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.bulk import pipelined
from alphapulse_dagster.db.engine import derived_write
from alphapulse_dagster.gc_pause import without_gc_pauses
from alphapulse_dagster.sync.cancellations import append_expiries
from alphapulse_dagster.sync.gap_rules import needs_payload
from alphapulse_dagster.sync.gaps import (
    GapPass,
    GapResult,
    plan_gaps,
    stale_score_ids,
    time_driven_gap_ids,
)
from alphapulse_dagster.sync.health import HealthReport, health_report, open_gaps_by_type
from alphapulse_dagster.sync.log_horizon import log_head, safe_head, signals_after
from alphapulse_dagster.sync.projection import (
    CHUNK,
    FoldInput,
    ProjectionResult,
    chunked,
    fold_chunk,
    read_cursor,
    read_fold_input,
    refold_input,
    write_cursor,
)
from alphapulse_dagster.sync.reconcile import (
    ReconcileResult,
    all_signal_ids,
    needs_candles,
    needs_tier0,
    reconcile_rows,
    tier0_settled,
    tier1_signal_ids,
)
from alphapulse_dagster.sync.registry_rows import RegistryRows
from alphapulse_dagster.sync.signal_facts import FactsWanted, load_facts
from alphapulse_dagster.sync.sync_lock import SyncBusy, sync_lock
from alphapulse_dagster.sync.write_plan import ChunkPlan, plan_writes, write_plan

log = logging.getLogger(__name__)

__all__ = ["SyncBusy", "SyncReport", "SyncRequest", "run_sync", "sync_lock"]

RECONCILE_CURSOR = "reconcile"
# chunk of a pipelined projection: small enough that the server's writes of one chunk
# overlap most of the planning of the next, large enough to keep statements few (chunks
# of 250 measured slower: bench/RESULTS.md, round VI)
PIPELINED_CHUNK = 500


@dataclass(frozen=True)
class SyncRequest:
    """Which signals a cycle handles (see the module docstring): ``signal_ids`` (the
    sensor's batch) with everything that has new events; ``full``: every signal, by
    set-based predicates; ``rescan``: also re-detect the gaps of every signal."""

    signal_ids: Sequence[str] | None = None
    full: bool = False
    rescan: bool = False


@dataclass
class Cycle:
    """One cycle's settings and running totals."""

    engine: Engine
    config: AppConfig
    request: SyncRequest
    gap_pass: GapPass
    rows: RegistryRows = field(default_factory=RegistryRows)
    reconciled_through: int = 0  # the ``reconcile`` cursor as the cycle began
    candle_symbols: dict[str, bool] = field(default_factory=dict)  # symbol -> has candles
    projection: ProjectionResult = field(default_factory=ProjectionResult)
    reconcile: ReconcileResult = field(default_factory=ReconcileResult)
    gaps: GapResult = field(default_factory=GapResult)
    seconds: dict[str, float] = field(default_factory=dict)  # by stage

    @property
    def now(self) -> datetime:
        return self.gap_pass.now

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


@dataclass
class SyncReport:
    sync_run_id: str
    projection: ProjectionResult
    expired: list[str]
    reconcile: ReconcileResult
    gaps: GapResult
    health: HealthReport
    scope: int
    seconds: float
    # seconds by asset: the fold and the writes, the reconciliation (with its reads), the
    # gap rules, the health report
    step_seconds: dict[str, float]
    rows: RegistryRows
    open_gaps: dict[str, int]  # every open gap of the registry by type (not only the window's)


def plan_chunk(
    cycle: Cycle, conn: Connection, stored: Mapping[str, dict[str, Any]], fold: FoldInput | None
) -> ChunkPlan:
    """Everything a chunk of signals writes this cycle (``stored``: their rows as stored,
    by id): each row folded with ``fold`` (None: no new events), reconciled, its gaps and
    score detected."""
    rows: Mapping[str, dict[str, Any]] = stored
    audits: list[dict[str, Any]] = []
    known: dict[str, Any] = {}
    settled: set[str] = set()
    if fold is not None:
        folded = fold_chunk(stored, fold, cycle.now, cycle.gap_pass.sync_run_id)
        cycle.projection.rows_inserted += folded.inserted
        cycle.projection.rows_updated += folded.updated
        cycle.projection.reopened += folded.reopened
        rows, audits, known = folded.rows, folded.audits, fold.known()
        if not cycle.request.full:
            through = cycle.reconciled_through
            settled = {
                i for i, r in rows.items() if tier0_settled(stored.get(i), r, known.get(i), through)
            }
    listed = list(rows.values())
    with cycle.timed("reconcile"):
        wanted = FactsWanted(
            created_payload={
                r["signal_id"]
                for r in listed
                if needs_payload(r) or (r["signal_id"] not in settled and needs_tier0(r))
            },
            to_measure=[r for r in listed if needs_candles(r)],
        )
        facts = load_facts(conn, listed, wanted, known, cycle.now, cycle.candle_symbols)
        reconciled = reconcile_rows(
            listed, facts, cycle.now, cycle.gap_pass.sync_run_id, cycle.reconcile
        )
    final = {r["signal_id"]: reconciled.rows.get(r["signal_id"], r) for r in listed}
    with cycle.timed("gaps"):
        gaps = plan_gaps(list(final.values()), facts, cycle.gap_pass, cycle.gaps)
    for signal_id, score in gaps.scores.items():
        final[signal_id] = {**final[signal_id], "health_score": score}
    plan = plan_writes(stored, final, cycle.now)
    plan.audits = [*audits, *reconciled.audits]
    plan.gap_opens, plan.gap_resolves, plan.gap_updates = gaps.opens, gaps.resolves, gaps.reweighed
    return plan


def _write(cycle: Cycle, conn: Connection, plan: ChunkPlan) -> None:
    write_plan(conn, plan, cycle.now)
    cycle.rows.keep(plan.rows)


@contextmanager
def _write_connection(engine: Engine) -> Iterator[Connection | None]:
    """The projection's write connection: on Postgres a second one, in a transaction of its
    own committed when the block ends — before the reading connection's, which only reads
    — so that its writes can run pipelined beside the reads. Elsewhere None: the reading
    connection writes too (SQLite has one writer)."""
    if engine.dialect.name != "postgresql":
        yield None
        return
    with derived_write(engine) as writes:
        yield writes


def _project(cycle: Cycle) -> set[str]:
    """Pass 1: fold, reconcile and score every signal with events past the ``lifecycle``
    cursor, up to the log's safe head; the cursor advances with the rows. Returns the
    signals done."""
    # the safe head, in its own transaction before the projection's (log_horizon)
    head = safe_head(cycle.engine, cycle.config.hybrid_sync.log_barrier_timeout_ms)
    with derived_write(cycle.engine) as conn, _write_connection(cycle.engine) as writes:
        cursor = read_cursor(conn)
        cycle.reconciled_through = read_cursor(conn, RECONCILE_CURSOR)
        # barrier timed out: the cursor is its own head, nothing new is projected this time
        head = cursor if head is None else head
        cycle.projection.last_event_id = max(cursor, head)
        if head <= cursor:
            return set()
        ids = signals_after(conn, cursor, head)
        out = conn if writes is None else writes
        with pipelined(out):
            for chunk in chunked(ids, CHUNK if writes is None else PIPELINED_CHUNK):
                stored = cycle.rows.load(conn, chunk)
                fold = read_fold_input(conn, stored, chunk, cursor)
                _write(cycle, out, plan_chunk(cycle, conn, stored, fold))
        write_cursor(out, head, cycle.now)
    cycle.projection.signals_touched = len(ids)
    return set(ids)


def _expire(cycle: Cycle) -> tuple[list[str], set[str]]:
    """Pass 2: inferred expiries of PENDING signals past their window (of the requested
    ids, unless ``full``), folded, reconciled and scored. Returns the expired signals and
    every signal re-folded."""
    request = cycle.request
    scope = None if request.full or request.signal_ids is None else request.signal_ids
    with derived_write(cycle.engine) as conn:
        expired, refold = append_expiries(conn, cycle.config, cycle.now, scope)
        for chunk in chunked(sorted(set(refold))):
            stored = cycle.rows.load(conn, chunk)
            _write(cycle, conn, plan_chunk(cycle, conn, stored, refold_input(conn, chunk)))
    return expired, set(refold)


def _catch_up_scope(cycle: Cycle, done: set[str]) -> tuple[list[str], int]:
    """Pass 3's signals (module docstring), but those in ``done``, and the head the
    ``reconcile`` cursor may advance to: the projection's (safe) cursor, never further —
    a row can hold newer events (inferred expiries) while an older id is uncommitted."""
    request, sync = cycle.request, cycle.config.hybrid_sync
    with cycle.engine.connect() as conn:
        head = read_cursor(conn)
        # (reaches the newest event of the log: a signal whose events are not folded yet is
        # reconciled as the registry has it; its events come next cycle)
        ids = set(signals_after(conn, read_cursor(conn, RECONCILE_CURSOR), log_head(conn)))
        ids.update(request.signal_ids or ())
        if request.signal_ids is None or request.full:
            ids.update(tier1_signal_ids(conn))
            with cycle.timed("gaps"):
                ids.update(time_driven_gap_ids(conn, cycle.now, sync))
        if request.full:
            with cycle.timed("gaps"):
                ids.update(stale_score_ids(conn, sync))
        if request.rescan:
            ids.update(all_signal_ids(conn))
    return sorted(ids.difference(done)), head


def _catch_up(cycle: Cycle, done: set[str]) -> int:
    """Pass 3; returns how many signals it handled."""
    ids, head = _catch_up_scope(cycle, done)
    for chunk in chunked(ids):
        with derived_write(cycle.engine) as conn:
            _write(cycle, conn, plan_chunk(cycle, conn, cycle.rows.load(conn, chunk), None))
    with derived_write(cycle.engine) as conn:
        if read_cursor(conn, RECONCILE_CURSOR) < head:
            write_cursor(conn, head, cycle.now, RECONCILE_CURSOR)
    return len(ids)


def run_sync(
    engine: Engine,
    config: AppConfig,
    now: datetime,
    sync_run_id: str | None = None,
    request: SyncRequest = SyncRequest(),
    lock_wait_seconds: float = 30.0,
) -> SyncReport:
    """One whole cycle under the sync lock. Raises :class:`SyncBusy` when another cycle
    holds the lock for longer than ``lock_wait_seconds``."""
    run_id = sync_run_id or f"sync-{uuid.uuid4().hex[:12]}"
    cycle = Cycle(engine, config, request, GapPass(now, config.hybrid_sync, run_id))
    started = time.perf_counter()
    with sync_lock(engine, run_id, lock_wait_seconds), without_gc_pauses():
        done = _project(cycle)
        expired, refolded = _expire(cycle)
        scope = len(done | refolded) + _catch_up(cycle, done | refolded)
        with cycle.timed("health"), derived_write(engine) as conn:
            health = health_report(conn, now, config.hybrid_sync, run_id, persist=True)
            open_gaps = open_gaps_by_type(conn)
    seconds = time.perf_counter() - started
    stages = cycle.seconds
    step_seconds = {
        "reconciled_signals": stages.get("reconcile", 0.0),
        "gap_report": stages.get("gaps", 0.0),
        "signal_health": stages.get("health", 0.0),
    }
    step_seconds["signal_lifecycle"] = max(0.0, seconds - sum(step_seconds.values()))
    log.info(
        "sync %s: %d signals projected, %d expired, %d fields changed, %d open gaps, "
        "health %.1f in %.2fs",
        run_id,
        cycle.projection.signals_touched,
        len(expired),
        cycle.reconcile.fields_changed,
        health.total_gaps,
        health.health_score,
        seconds,
    )
    return SyncReport(
        run_id,
        cycle.projection,
        expired,
        cycle.reconcile,
        cycle.gaps,
        health,
        scope,
        seconds,
        step_seconds,
        cycle.rows,
        open_gaps,
    )
