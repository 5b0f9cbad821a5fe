"""The registry as a projection of the log: the rules of the fold are in ``lifecycle.py``;
this module reads a chunk's events (:func:`read_fold_input`) and folds them onto the
stored rows (:func:`fold_chunk`, pure). The sync cycle (``sync_cycle.py``) reconciles the
folded rows before one write; :func:`project_log` is the projection alone (catch-up
without the sync) and :func:`rebuild_registry` rebuilds the registry from the whole log.

Cursors over the log (``sync_cursors``): :func:`read_cursor`, :func:`write_cursor`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.bulk import in_ids
from alphapulse_dagster.db.tables import signal_events, signals, sync_cursors
from alphapulse_dagster.sync.fold_resume import can_resume, span_of
from alphapulse_dagster.sync.lifecycle import (
    CLOSED,
    CONFIRMED,
    EXPIRED,
    PROJECTED_COLUMNS,
    SHARED_COLUMNS,
    EventRow,
    KnownEvents,
    fold,
    is_inferred_expiry,
    merge_with_existing,
)
from alphapulse_dagster.sync.log_horizon import log_head, signals_after
from alphapulse_dagster.sync.registry_rows import read_rows
from alphapulse_dagster.sync.write_plan import EMPTY_ROW, plan_writes, write_plan

LIFECYCLE_CURSOR = "lifecycle"
CHUNK = 2000


@dataclass
class ProjectionResult:
    """What one projection pass did."""

    signals_touched: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    reopened: int = 0
    last_event_id: int = 0


def chunked(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_EVENT_COLUMNS = (
    signal_events.c.event_id,
    signal_events.c.source,
    signal_events.c.event_type,
    signal_events.c.signal_id,
    signal_events.c.trade_id,
    signal_events.c.symbol,
    signal_events.c.event_time,
    signal_events.c.payload,
)


def _events_where(conn: Connection, *conditions: Any) -> dict[str, list[EventRow]]:
    query = select(*_EVENT_COLUMNS).where(*conditions)
    grouped: dict[str, list[EventRow]] = defaultdict(list)
    make = EventRow._make  # the selected columns are EventRow's fields, in its order
    for r in conn.execute(query).all():
        event = make(r)
        if not event.payload:  # (NOT NULL, but a JSON null reads as None)
            event = event._replace(payload={})
        grouped[event.signal_id].append(event)
    return grouped


def _recent_events(
    conn: Connection, signal_ids: Sequence[str], after: int
) -> dict[str, list[EventRow]]:
    """The events of ``signal_ids`` past the projection cursor ``after`` — a primary-key
    range at the end of the log, not each signal's whole history.

    These are all the events a row may not hold (:func:`span_of`): those above its
    ``last_event_id``, and any at or below it but past the cursor. None lies between a
    row's ``last_event_id`` and a cursor above it: every event up to the cursor was
    committed before the cursor passed it (:mod:`~alphapulse_dagster.sync.log_horizon`), so it
    was folded then, and ``last_event_id`` counts it."""
    if not signal_ids:
        return {}
    return _events_where(
        conn,
        signal_events.c.event_id > after,
        in_ids(conn, signal_events.c.signal_id, signal_ids),
    )


def load_events(conn: Connection, signal_ids: Sequence[str]) -> dict[str, list[EventRow]]:
    """Every event of ``signal_ids`` (uses the (signal_id, event_time) index)."""
    grouped: dict[str, list[EventRow]] = {}
    for chunk in chunked(signal_ids):
        grouped.update(_events_where(conn, in_ids(conn, signal_events.c.signal_id, chunk)))
    return grouped


def read_cursor(conn: Connection, name: str = LIFECYCLE_CURSOR) -> int:
    value = conn.execute(
        select(sync_cursors.c.last_event_id).where(sync_cursors.c.name == name)
    ).scalar()
    return int(value or 0)


def write_cursor(conn: Connection, last_event_id: int, now: datetime, name: str = LIFECYCLE_CURSOR):  # type: ignore[no-untyped-def]
    values = {"name": name, "last_event_id": last_event_id, "updated_at": now}
    statement = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(sync_cursors)
    conn.execute(
        statement.values(**values).on_conflict_do_update(
            index_elements=["name"],
            set_={"last_event_id": last_event_id, "updated_at": now},
        )
    )


@dataclass(frozen=True)
class FoldInput:
    """A chunk's events to fold, by signal, and the signals whose fold resumes from their
    stored row (their events are only those past it)."""

    events: Mapping[str, list[EventRow]]
    resumable: frozenset[str]

    def known(self) -> dict[str, KnownEvents]:
        """The loaded events of each signal, and whether they are all its events."""
        return {i: KnownEvents(e, i not in self.resumable) for i, e in self.events.items()}


def read_fold_input(
    conn: Connection, stored: Mapping[str, Mapping[str, Any]], chunk: Sequence[str], after: int
) -> FoldInput:
    """The events to fold for each signal of ``chunk`` (``stored``: its rows as stored):
    those past the projection cursor ``after`` when the fold can resume from the stored
    row (:func:`can_resume`), else all of the signal's events."""
    events: dict[str, list[EventRow]] = {}
    recent = _recent_events(conn, [i for i in chunk if i in stored], after)
    for signal_id, candidates in recent.items():
        row = stored[signal_id]
        if can_resume(row, span_of(row, candidates, after)):
            events[signal_id] = candidates  # all new: none is unseen
    resumable = frozenset(events)
    events.update(load_events(conn, [i for i in chunk if i not in resumable]))
    return FoldInput(events, resumable)


def refold_input(conn: Connection, chunk: Sequence[str]) -> FoldInput:
    """Every event of each signal of ``chunk`` (a whole re-fold)."""
    return FoldInput(load_events(conn, chunk), frozenset())


# the columns a re-fold writes
_WRITTEN: tuple[str, ...] = (*PROJECTED_COLUMNS, "field_provenance", "data_confidence")
# what tells whether a re-fold changed a row
_COMPARED: tuple[str, ...] = (*PROJECTED_COLUMNS, "field_provenance")


@dataclass
class Folded:
    """A chunk after its fold: each folded signal's row as the fold leaves it (the stored
    row itself when the fold changed nothing), the counts, and the audit rows of late
    ENTRYs that re-opened an inferred expiry."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    reopened: int = 0
    audits: list[dict[str, Any]] = field(default_factory=list)


def fold_chunk(
    stored: Mapping[str, dict[str, Any]], fold_input: FoldInput, now: datetime, sync_run_id: str
) -> Folded:
    """Fold each signal's events onto its stored row (resumed, or from all its events)."""
    out = Folded()
    for signal_id, events in fold_input.events.items():
        old = stored.get(signal_id)
        resume = old if signal_id in fold_input.resumable else None
        row = merge_with_existing(fold(events, resume), old)
        if old is None:
            out.rows[signal_id] = {**EMPTY_ROW, **row, "signal_id": signal_id}
            out.inserted += 1
            continue
        # (the mean confidence follows the provenance: alone, it is a float's last bit;
        # the first difference decides — the provenance, a deep compare, comes last)
        if all(row[c] == old.get(c) for c in _COMPARED):
            out.rows[signal_id] = old
            continue
        out.rows[signal_id] = {**old, **{c: row[c] for c in _WRITTEN}}
        out.updated += 1
        if is_inferred_expiry(old) and row["status"] in (CONFIRMED, CLOSED):
            out.reopened += 1
            out.audits.append(_reopen_audit(old, row, sync_run_id, now))
    return out


def _reopen_audit(
    old: Mapping[str, Any], row: Mapping[str, Any], sync_run_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "sync_run_id": sync_run_id,
        "signal_id": old["signal_id"],
        "field": "status",
        "old_value": {"status": old["status"], "reason": EXPIRED},
        "new_value": {"status": row["status"]},
        "tier": "event",
        "confidence": 1.0,
        "old_confidence": float(old["status_confidence"]),
        "reason": "late ENTRY re-opens an inferred expiry "
        f"({row['field_provenance']['status']['source']})",
        "action_timestamp": now,
    }


def project_log(
    conn: Connection, now: datetime, sync_run_id: str = "projection"
) -> ProjectionResult:
    """The projection alone, in the caller's transaction: re-fold every signal with events
    past the ``lifecycle`` cursor and write the rows that changed, then advance the
    cursor to ``max(event_id)`` — safe with one writer at a time (tests, a rebuild). The
    sync cycle projects with its reconciliation (``sync_cycle.run_sync``)."""
    cursor = read_cursor(conn)
    head = log_head(conn)
    result = ProjectionResult(last_event_id=cursor)
    if head <= cursor:
        return result
    ids = signals_after(conn, cursor, head)
    for chunk in chunked(ids):
        stored = read_rows(conn, chunk)
        folded = fold_chunk(stored, read_fold_input(conn, stored, chunk, cursor), now, sync_run_id)
        plan = plan_writes(stored, folded.rows, now)
        plan.audits.extend(folded.audits)
        write_plan(conn, plan, now)
        result.rows_inserted += folded.inserted
        result.rows_updated += folded.updated
        result.reopened += folded.reopened
    write_cursor(conn, head, now)
    result.signals_touched, result.last_event_id = len(ids), head
    return result


def rebuild_registry(conn: Connection, now: datetime, head: int | None = None) -> ProjectionResult:
    """Rebuild the registry from the whole log, from scratch: every row is deleted and
    re-folded. Sync-owned columns (and their provenance) of the old rows are carried over —
    they are enrichments, not facts of the log.

    ``head``: where the ``lifecycle`` cursor is left — the log's safe head
    (:func:`alphapulse_dagster.sync.log_horizon.safe_head`) when other processes may be
    appending, as for :func:`project_log`: every id up to it was committed before this
    transaction began, so none is skipped. Every event this transaction sees is folded;
    those past ``head`` are folded again by the next projection (a re-fold, idempotent).
    ``None``: ``max(event_id)`` as this transaction sees it (one writer at a time)."""
    if head is None:
        head = log_head(conn)
    ids = sorted(r[0] for r in conn.execute(select(signal_events.c.signal_id).distinct()))
    sync_owned = [c.name for c in signals.columns if c.name not in _NOT_SYNC_OWNED]
    inserted = 0
    for chunk in chunked(ids):
        old_rows = read_rows(conn, chunk)
        conn.execute(delete(signals).where(signals.c.signal_id.in_(chunk)))
        events = load_events(conn, chunk)
        rows = []
        for signal_id in chunk:
            old = old_rows.get(signal_id)
            row = merge_with_existing(fold(events[signal_id]), old)
            if old is not None:
                for column in sync_owned:
                    if column not in SHARED_COLUMNS:
                        row[column] = old[column]
            rows.append({**row, "signal_id": signal_id, "updated_at": now})
        conn.execute(insert(signals), rows)
        inserted += len(rows)
    # registry rows whose events are gone (never expected in an append-only log)
    conn.execute(
        delete(signals).where(signals.c.signal_id.not_in(select(signal_events.c.signal_id)))
    )
    write_cursor(conn, head, now)
    return ProjectionResult(len(ids), inserted, 0, 0, head)


_NOT_SYNC_OWNED = frozenset(
    (*PROJECTED_COLUMNS, "signal_id", "field_provenance", "data_confidence", "updated_at")
)
