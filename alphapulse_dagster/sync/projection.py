"""The registry as a projection of the log: :func:`project_log` catches ``signals`` up with
``signal_events`` past the ``lifecycle`` cursor, :func:`rebuild_registry` rebuilds it
from the whole log. The rules of the fold are in ``lifecycle.py``; this module reads the
events, resumes or re-folds each signal, and writes the rows that changed (with the
sync's reconciliation of them, when given an ``enrich`` hook — ``sync_cycle.py``).

Cursors over the log (``sync_cursors``): :func:`read_cursor`, :func:`write_cursor`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.bulk import (
    JsonMerge,
    in_ids,
    insert_rows,
    json_merge,
    pipelined,
    update_rows,
)
from alphapulse_dagster.db.tables import signal_events, signals, sync_audit_log, sync_cursors
from alphapulse_dagster.sync.lifecycle import (
    CLOSED,
    CONFIRMED,
    EXPIRED,
    PROJECTED_COLUMNS,
    SHARED_COLUMNS,
    EventRow,
    KnownEvents,
    can_resume,
    fold,
    is_inferred_expiry,
    merge_with_existing,
    span_of,
)
from alphapulse_dagster.sync.log_horizon import log_head, signals_after
from alphapulse_dagster.sync.registry_rows import RegistryRows, load_rows

LIFECYCLE_CURSOR = "lifecycle"
CHUNK = 2000
# part of a pipelined projection (:func:`project_log`): small enough that the server's
# writes of one part overlap most of the planning, large enough to keep statements few
# (parts of 250 measured slower: bench/RESULTS.md, round VI)
PIPELINED_CHUNK = 500


@dataclass(frozen=True)
class ProjectionResult:
    """What one projection pass did."""

    signals_touched: int
    rows_inserted: int
    rows_updated: int
    reopened: int
    last_event_id: int


def chunked(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def update_by_id(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """``UPDATE signals`` by primary key (``b_id``), writing only the columns each row
    carries: one statement per distinct column set (a cycle has a handful)."""
    update_rows(conn, signals, rows)


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


# the columns a re-fold writes
_WRITTEN: tuple[str, ...] = (*PROJECTED_COLUMNS, "field_provenance", "data_confidence")


def refold_signals(
    conn: Connection,
    signal_ids: Iterable[str],
    now: datetime,
    sync_run_id: str | None = None,
    after: int | None = None,
    cache: RegistryRows | None = None,
    enrich: Enrich | None = None,
    writes: Connection | None = None,
    chunk_size: int = CHUNK,
) -> tuple[int, int, int]:
    """Re-fold ``signal_ids`` and write the rows that changed.

    With ``after`` (the projection cursor the new events are past), a signal whose new
    events all sort after its folded ones (:func:`can_resume`) has just those folded onto
    its stored row; every other signal is re-folded from all its events. A late ENTRY that
    re-opens an inferred expiry is audited when ``sync_run_id`` is given. ``cache``: the
    cycle's registry rows (read through it, kept current with what is written).

    ``enrich``: called with the full rows the fold inserts or changes, *before* they are
    written (the sync's reconciliation): it updates them in place and returns its own
    ``UPDATE`` rows and audit rows, which are written with the fold's — one write per
    row instead of two.

    ``writes``: another connection for the writes (only :func:`~alphapulse_dagster.db.bulk.
    insert_rows` / ``update_rows`` run on it) — :func:`project_log` passes one in pipeline
    mode, so the server writes one part (``chunk_size`` signals) while the next is planned;
    ``conn`` then only reads. Returns (inserted, updated, reopened)."""
    ids = sorted(set(signal_ids))
    counts = [0, 0, 0]  # inserted, updated, reopened
    for chunk in chunked(ids):
        existing, events, resumable = _read_chunk(conn, chunk, after, cache)
        # the reads are shared; planning and writing go by ``chunk_size`` (pipelining)
        for part in chunked(chunk, chunk_size):
            _refold_part(
                conn,
                part,
                existing,
                events,
                resumable,
                now,
                sync_run_id,
                cache,
                enrich,
                counts,
                writes,
            )
    return counts[0], counts[1], counts[2]


def _read_chunk(
    conn: Connection, chunk: Sequence[str], after: int | None, cache: RegistryRows | None
) -> tuple[dict[str, dict[str, Any]], dict[str, list[EventRow]], set[str]]:
    """The stored rows of ``chunk``, the events to fold for each signal and the signals
    whose fold resumes from their stored row (:func:`can_resume`)."""
    existing = load_rows(conn, chunk, cache)
    events: dict[str, list[EventRow]] = {}
    if after is not None:
        recent = _recent_events(conn, [i for i in chunk if i in existing], after)
        for signal_id, candidates in recent.items():
            stored = existing[signal_id]
            if can_resume(stored, span_of(stored, candidates, after)):
                events[signal_id] = candidates  # all new: none is unseen
    resumable = set(events)
    events.update(load_events(conn, [i for i in chunk if i not in resumable]))
    return existing, events, resumable


def _refold_part(
    conn: Connection,
    chunk: Sequence[str],
    existing: Mapping[str, dict[str, Any]],
    events: Mapping[str, list[EventRow]],
    resumable: set[str],
    now: datetime,
    sync_run_id: str | None,
    cache: RegistryRows | None,
    enrich: Enrich | None,
    counts: list[int],
    writes: Connection | None,
) -> None:
    """Fold, enrich and write the signals of ``chunk`` (read by :func:`_read_chunk`),
    adding to ``counts`` — see :func:`refold_signals`."""
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    full: dict[str, dict[str, Any]] = {}  # each written row as it will be stored
    enrichment_after: Callable[[Connection], None] | None = None
    for signal_id in chunk:
        if signal_id not in events:
            continue
        old = existing.get(signal_id)
        resume = old if signal_id in resumable else None
        row = merge_with_existing(fold(events[signal_id], resume), old)
        if old is None:
            new_rows.append({**row, "signal_id": signal_id, "updated_at": now})
            full[signal_id] = {**_EMPTY_ROW, **new_rows[-1]}
            continue
        changed = {c: row[c] for c in _WRITTEN if row[c] != old.get(c)}
        # data_confidence follows the provenance (a float mean: equal documents in another
        # key order may differ in the last bit) — alone, it is no change
        if not changed.keys() - {"data_confidence"}:
            continue
        if "field_provenance" in changed:
            changed["field_provenance"] = json_merge(
                old["field_provenance"], changed["field_provenance"]
            )
        changed_rows.append({**changed, "b_id": signal_id, "updated_at": now})
        if is_inferred_expiry(old) and row["status"] in (CONFIRMED, CLOSED):
            counts[2] += 1
            if sync_run_id is not None:
                audits.append(
                    {
                        "sync_run_id": sync_run_id,
                        "signal_id": signal_id,
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
                )
        full[signal_id] = {**old, **{c: row[c] for c in _WRITTEN}, "updated_at": now}
    if enrich is not None and full:
        known = {i: KnownEvents(events[i], i not in resumable) for i in full}
        # updates ``full``; ``existing`` still holds the rows as stored before this fold
        enrichment = enrich(conn, list(full.values()), known, existing)
        _merge_enrichment(enrichment.updates, full, new_rows, changed_rows)
        audits.extend(enrichment.audits)
        enrichment_after = enrichment.after
    if cache is not None:  # last: an ``existing`` row may be the cached row itself
        for changed in changed_rows:
            cache.record(full[changed["b_id"]])
        for new in new_rows:
            cache.put(full[new["signal_id"]])
    counts[0] += len(new_rows)
    counts[1] += len(changed_rows)
    out = conn if writes is None else writes
    if new_rows:
        insert_rows(out, signals, new_rows)
    if changed_rows:
        update_by_id(out, changed_rows)
    if audits:
        insert_rows(out, sync_audit_log, audits)
    if enrichment_after is not None:
        enrichment_after(out)


class Enrichment(NamedTuple):
    """What an ``enrich`` hook adds to a fold's writes: ``UPDATE`` rows (``b_id``) merged
    into the fold's own, audit rows, and writes to make after the rows are stored."""

    updates: list[dict[str, Any]]
    audits: list[dict[str, Any]]
    after: Callable[[Connection], None] | None = None


# (connection, the rows to write, the events folded into each, the rows as stored before)
Enrich = Callable[
    [Connection, list[dict[str, Any]], Mapping[str, KnownEvents], Mapping[str, Mapping[str, Any]]],
    Enrichment,
]
_EMPTY_ROW: dict[str, Any] = dict.fromkeys(signals.c.keys())


def _merge_enrichment(
    extra: Sequence[Mapping[str, Any]],
    full: Mapping[str, dict[str, Any]],
    new_rows: list[dict[str, Any]],
    changed_rows: list[dict[str, Any]],
) -> None:
    """Fold ``enrich``'s ``UPDATE`` rows into the fold's inserts and updates. The
    provenance is written from the final document: whole for an insert, as a merge over
    the stored document for an update."""
    inserts = {r["signal_id"]: r for r in new_rows}
    updates = {r["b_id"]: r for r in changed_rows}
    for values in extra:
        signal_id = values["b_id"]
        provenance = full[signal_id]["field_provenance"]
        columns = {k: v for k, v in values.items() if k not in ("b_id", "field_provenance")}
        if signal_id in inserts:
            inserts[signal_id].update(columns, field_provenance=provenance)
        elif "field_provenance" in values:
            target = updates[signal_id]
            target.update(columns, field_provenance=_merged(target, values, provenance))
        else:
            updates[signal_id].update(columns)


def _merged(fold_update: Mapping[str, Any], extra: Mapping[str, Any], final: Any) -> Any:
    """The provenance to write over the stored document: the fold's change (a merge,
    a whole document, or none) then ``extra``'s merge, as one merge with the final values
    — or the whole final document when the fold replaced it (a key removed)."""
    first = fold_update.get("field_provenance")
    second = extra["field_provenance"]
    if not isinstance(second, JsonMerge) or (
        first is not None and not isinstance(first, JsonMerge)
    ):
        return final
    keys = {*(first.changed if first is not None else ()), *second.changed}
    return JsonMerge({k: final[k] for k in keys}, final)


def project_log(
    conn: Connection,
    now: datetime,
    sync_run_id: str | None = None,
    head: int | None = None,
    cache: RegistryRows | None = None,
    enrich: Enrich | None = None,
    writes: Connection | None = None,
) -> ProjectionResult:
    """Catch the registry up with the log: re-fold every signal with events in
    ``(cursor, head]``, then advance the ``lifecycle`` cursor to ``head`` (same transaction
    as the rows: ``writes``'s when given, else ``conn``'s).

    ``writes``: a second connection (its own transaction, committed by the caller) that
    takes every write, in pipeline mode (:func:`~alphapulse_dagster.db.bulk.pipelined`):
    the server writes one part (``PIPELINED_CHUNK`` signals) while this process plans the
    next, reading on ``conn``. The parts touch disjoint signals, so no read depends on a
    write still in flight; a failed write aborts ``writes``'s transaction, cursor
    included.

    ``head``: the log's safe head (:func:`alphapulse_dagster.sync.log_horizon.safe_head`),
    computed in an earlier transaction. With several writers on Postgres this is what
    keeps the cursor from passing an id that is still uncommitted. ``None`` uses
    ``max(event_id)`` as this transaction sees it, which is safe only with one writer at a
    time (SQLite, tests, benchmarks).

    Cost grows with the number of new events' signals, not with the log's length."""
    cursor = read_cursor(conn)
    if head is None:
        head = log_head(conn)
    if head <= cursor:
        return ProjectionResult(0, 0, 0, 0, cursor)
    ids = signals_after(conn, cursor, head)
    if writes is None:
        counts = refold_signals(conn, ids, now, sync_run_id, cursor, cache, enrich)
    else:
        with pipelined(writes):
            counts = refold_signals(
                conn, ids, now, sync_run_id, cursor, cache, enrich, writes, PIPELINED_CHUNK
            )
    write_cursor(conn if writes is None else writes, head, now)
    inserted, updated, reopened = counts
    return ProjectionResult(len(ids), inserted, updated, reopened, head)


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
        old_rows = load_rows(conn, chunk)
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
