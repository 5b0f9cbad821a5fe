"""The signal lifecycle: the ``signals`` registry as a pure fold of ``signal_events``.

States (SPEC §8)::

    PENDING --ENTRY--> CONFIRMED --EXIT--> CLOSED (TARGET | STOP | BREAKEVEN | MANUAL)
    PENDING --CANCELLED--> CANCELLED (explicit, or inferred EXPIRED)

Rules of the fold, applied to one signal's events in ``(event_time, event_id)`` order —
whatever order they arrived in:

- SIGNAL_CREATED opens a signal as PENDING (an ENTRY that arrived first already made it
  CONFIRMED; the SIGNAL_CREATED then only adds ``created_at``).
- ENTRY confirms a PENDING signal, and re-opens one cancelled by an *inferred* expiry
  (the expiry event carries the expiry moment as its ``event_time``, so only an ENTRY
  timed after it can be "late"). An ENTRY after an *explicit* CANCELLED is ignored.
- An explicit CANCELLED outranks an inferred one in either order: it replaces an inferred
  expiry (confidence 1.0), and an inferred expiry never touches a non-PENDING signal.
- EXIT closes the trade; MFE_UPDATE only stamps ``last_mfe_update_at``.

Inferred expiries are events too (``cancellations.py`` appends them), so rebuilding the
registry from the log (:func:`rebuild_registry`) gives the same projection-owned columns
as the incremental path (:func:`project_log`). Sync-owned columns (``reconcile.py``) and
their provenance survive both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    delete,
    insert,
    select,
)
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
from alphapulse_dagster.log_horizon import log_head, signals_after
from alphapulse_dagster.registry_rows import RegistryRows, load_rows
from alphapulse_dagster.timeframes import UnknownTimeframe, normalise_interval

PENDING, CONFIRMED, CLOSED, CANCELLED = "PENDING", "CONFIRMED", "CLOSED", "CANCELLED"
EXIT_REASONS: tuple[str, ...] = ("TARGET", "STOP", "BREAKEVEN", "MANUAL")
EXPIRED = "EXPIRED"
# how sure we are that a PENDING signal past its window really expired (no explicit event)
INFERRED_STATUS_CONFIDENCE = 0.8
LIFECYCLE_CURSOR = "lifecycle"

# Columns the fold owns (rewritten on every re-fold).
PROJECTED_COLUMNS: tuple[str, ...] = (
    "source",
    "trade_id",
    "symbol",
    "timeframe",
    "direction",
    "status",
    "status_reason",
    "status_confidence",
    "created_at",
    "confirmed_at",
    "entry_price",
    "stop_loss",
    "targets",
    "last_mfe_update_at",
    "exit_price",
    "exit_reason",
    "closed_at",
    "cancelled_at",
    "first_event_id",
    "last_event_id",
    "folded_until",
)
# Projection-owned, but the sync may fill them while no event carries them; an event value
# always wins, an empty fold result keeps the sync's value.
SHARED_COLUMNS: tuple[str, ...] = ("direction", "entry_price", "stop_loss", "targets")
# Fields whose provenance the fold writes (tier "event").
PROVENANCED_COLUMNS: tuple[str, ...] = (
    "timeframe",
    "direction",
    "status",
    "created_at",
    "confirmed_at",
    "entry_price",
    "stop_loss",
    "targets",
    "last_mfe_update_at",
    "exit_price",
    "exit_reason",
    "closed_at",
    "cancelled_at",
)
_PROVENANCED = frozenset(PROVENANCED_COLUMNS)
CHUNK = 2000
# part of a pipelined projection (:func:`project_log`): small enough that the server's
# writes of one part overlap most of the planning, large enough to keep statements few
# (parts of 250 measured slower: bench/RESULTS.md, round VI)
PIPELINED_CHUNK = 500


class EventRow(NamedTuple):
    """One ``signal_events`` row (a tuple: a cycle loads thousands)."""

    event_id: int
    source: str
    event_type: str
    signal_id: str
    trade_id: str | None
    symbol: str
    event_time: datetime
    payload: Mapping[str, Any]

    @property
    def inferred(self) -> bool:
        return self.event_type == "CANCELLED" and self.payload.get("inferred") is True


class KnownEvents(NamedTuple):
    """A signal's events that a fold loaded: all of them (``complete``), or only those past
    its stored row's last folded event — whose ids are above every folded one, so the
    latest event of a type is known whenever one of them has that type."""

    events: Sequence[EventRow]
    complete: bool

    def latest(self, event_type: str) -> EventRow | None | bool:
        """The latest ``event_type`` event (by id); None if the signal has none; False if
        these events cannot tell (the database must)."""
        best = None
        for event in self.events:
            if event.event_type == event_type and (best is None or event.event_id > best.event_id):
                best = event
        if best is None and not self.complete:
            return False
        return best


@dataclass(frozen=True)
class ProjectionResult:
    """What one projection pass did."""

    signals_touched: int
    rows_inserted: int
    rows_updated: int
    reopened: int
    last_event_id: int


# --- payload parsing ----------------------------------------------------------------------


def normalise_direction(value: Any) -> str | None:
    """LONG / SHORT from LONG, SHORT, BULLISH, BEARISH (any case); else None."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    return {"LONG": "LONG", "BULLISH": "LONG", "SHORT": "SHORT", "BEARISH": "SHORT"}.get(text)


def price(value: Any) -> float | None:
    """A finite positive price, or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def price_list(value: Any) -> list[float] | None:
    if not isinstance(value, list | tuple):
        return None
    prices = [price(v) for v in value]
    clean = [p for p in prices if p is not None]
    return clean or None


def timeframe_of(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return normalise_interval(str(value))
    except UnknownTimeframe:
        return None


# --- the fold -----------------------------------------------------------------------------


def fold(events: Sequence[EventRow], resume: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Project one signal's events into its registry columns (``PROJECTED_COLUMNS``) plus
    ``field_provenance`` for them. ``events`` may be in any order.

    ``resume``: the stored registry row of the signal, when every one of ``events`` sorts
    after all the events already folded into it (in ``(event_time, event_id)`` order —
    see :func:`can_resume`). The fold then continues from that row instead of replaying
    the whole history; the result is the same."""
    ordered = sorted(events, key=lambda e: (e.event_time, e.event_id))
    row: dict[str, Any] = dict.fromkeys(PROJECTED_COLUMNS)
    provenance: dict[str, dict[str, Any]] = {}
    explicit_cancel = False
    if resume is not None:
        row, provenance, explicit_cancel = _fold_state(resume)

    def put(column: str, value: Any, event: EventRow, confidence: float = 1.0) -> None:
        row[column] = value
        if column in _PROVENANCED:
            provenance[column] = {
                "tier": "event",
                "confidence": confidence,
                "source": f"{event.event_type}#{event.event_id}",
            }

    def clear(*columns: str) -> None:
        for column in columns:
            row[column] = None
            provenance.pop(column, None)

    for event in ordered:
        payload = event.payload
        kind = event.event_type
        status = row["status"]
        direction = normalise_direction(payload.get("direction"))
        timeframe = timeframe_of(payload.get("timeframe"))
        if kind == "SIGNAL_CREATED":
            if row["created_at"] is None:
                put("created_at", event.event_time, event)
            if status is None:
                put("status", PENDING, event)
            if direction and row["direction"] is None:
                put("direction", direction, event)
            if timeframe and row["timeframe"] is None:
                put("timeframe", timeframe, event)
        elif kind == "ENTRY":
            reopenable = status == CANCELLED and not explicit_cancel
            if status in (None, PENDING) or reopenable:
                put("status", CONFIRMED, event)
                row["status_reason"] = None
                row["status_confidence"] = 1.0
                clear("cancelled_at")
                put("confirmed_at", event.event_time, event)
                for column in ("entry_price", "stop_loss"):
                    value = price(payload.get(column))
                    if value is not None:
                        put(column, value, event)
                targets = price_list(payload.get("targets"))
                if targets is not None:
                    put("targets", targets, event)
                if direction:
                    put("direction", direction, event)
                if timeframe:
                    put("timeframe", timeframe, event)
        elif kind == "MFE_UPDATE":
            if status in (None, PENDING):  # the trade is evidently live; ENTRY was missed
                put("status", CONFIRMED, event)
                row["status_confidence"] = 1.0
            put("last_mfe_update_at", event.event_time, event)
        elif kind == "EXIT":
            if status != CLOSED:
                reason = str(payload.get("exit_reason") or "MANUAL").strip().upper()[:16]
                put("status", CLOSED, event)
                row["status_reason"] = reason
                row["status_confidence"] = 1.0
                put("exit_reason", reason, event)
                exit_price = price(payload.get("exit_price"))
                if exit_price is not None:
                    put("exit_price", exit_price, event)
                put("closed_at", event.event_time, event)
        elif kind == "CANCELLED":
            if event.inferred:
                if status in (None, PENDING):
                    put("status", CANCELLED, event, INFERRED_STATUS_CONFIDENCE)
                    row["status_reason"] = EXPIRED
                    row["status_confidence"] = INFERRED_STATUS_CONFIDENCE
                    put("cancelled_at", event.event_time, event, INFERRED_STATUS_CONFIDENCE)
            elif status in (None, PENDING) or (status == CANCELLED and not explicit_cancel):
                explicit_cancel = True
                reason = str(payload.get("reason") or CANCELLED).strip().upper()[:32]
                put("status", CANCELLED, event)
                row["status_reason"] = reason
                row["status_confidence"] = 1.0
                put("cancelled_at", event.event_time, event)

    if row["status"] is None:  # only events that do not open a signal (never expected)
        row["status"] = PENDING
        row["status_confidence"] = 1.0
    if row["status_confidence"] is None:
        row["status_confidence"] = 1.0
    if resume is not None:
        # the first SIGNAL_CREATED names the source; created_at is set iff one was folded
        if resume["created_at"] is None:
            created = (e for e in ordered if e.event_type == "SIGNAL_CREATED")
            row["source"] = next((e.source for e in created), row["source"])
        row["trade_id"] = row["trade_id"] or next((e.trade_id for e in ordered if e.trade_id), None)
        row["last_event_id"] = max(row["last_event_id"], *(e.event_id for e in ordered))
        if ordered:  # (can_resume: they all sort after the row's folded_until)
            held = row["folded_until"]
            row["folded_until"] = max(ordered[-1].event_time, held or ordered[-1].event_time)
    else:
        first = min(ordered, key=lambda e: e.event_id)
        authored = [e for e in ordered if not e.inferred] or ordered
        creator = next((e for e in authored if e.event_type == "SIGNAL_CREATED"), authored[0])
        row["source"] = creator.source
        row["trade_id"] = next((e.trade_id for e in ordered if e.trade_id), None)
        row["symbol"] = first.symbol
        row["first_event_id"] = first.event_id
        row["last_event_id"] = max(e.event_id for e in ordered)
        row["folded_until"] = ordered[-1].event_time
    row["field_provenance"] = provenance
    row["data_confidence"] = mean_confidence(provenance)
    return row


def _fold_state(
    stored: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], bool]:
    """The fold's running state as it was after the events folded into ``stored``: its
    projected columns and event provenance — a shared column the sync filled (not tier
    "event") was empty for the fold — and whether an explicit CANCELLED was applied (the
    only way to hold CANCELLED at confidence 1.0)."""
    held: Mapping[str, Any] = stored["field_provenance"] or {}
    # the entries are shared, not copied: the fold replaces an entry, never edits one
    provenance = {c: v for c, v in held.items() if c in _PROVENANCED and v.get("tier") == "event"}
    row = {c: stored[c] for c in PROJECTED_COLUMNS}
    for column in SHARED_COLUMNS:
        if column not in provenance:
            row[column] = None
    explicit = stored["status"] == CANCELLED and float(stored["status_confidence"]) >= 1.0
    return row, provenance, explicit


class EventSpan(NamedTuple):
    """What :func:`can_resume` needs of a signal's events, relative to its stored row
    (``last`` = the row's ``last_event_id``): the latest event time among the folded events
    (the row's ``folded_until``), the earliest among those after ``last`` whose place in
    time matters (:func:`span_of`; None when there is none), whether any event up to
    ``last`` is past the projection cursor, and whether there is any event after ``last``."""

    folded_until: datetime | None
    fresh_from: datetime | None
    unseen_before_last: bool
    fresh: bool = True


def can_resume(stored: Mapping[str, Any] | None, span: EventSpan | None) -> bool:
    """Whether the events past ``stored["last_event_id"]`` can be folded onto ``stored``:
    each must sort after all the folded ones (``(event_time, event_id)`` order: a
    late-timed event re-folds the history) — but a first SIGNAL_CREATED, whose place does
    not matter (:func:`span_of`); no event up to the row's last one may be past the cursor
    (the row may not hold it: re-fold); the fold must have opened the signal itself
    (status provenance); and the signal's source must be settled (a row holding only
    inferred expiries takes it from its first authored event)."""
    if stored is None or span is None or "status" not in (stored["field_provenance"] or {}):
        return False
    if stored["created_at"] is None and _is_inferred_cancel(stored):
        return False
    if span.unseen_before_last or span.folded_until is None or not span.fresh:
        return False
    return span.fresh_from is None or span.fresh_from >= span.folded_until


def span_of(stored: Mapping[str, Any], recent: Sequence[EventRow], after: int) -> EventSpan:
    """The :class:`EventSpan` of a stored row from its ``recent`` events — those with an id
    above ``min(stored["last_event_id"], after)`` (:func:`_recent_events`): the ones above
    ``last_event_id`` are new, the others lie in ``(after, last_event_id]``, unseen.

    A SIGNAL_CREATED reaching a row that holds none (no ``created_at``) only fills what is
    still empty — ``created_at``, and ``direction`` / ``timeframe`` where no event set
    them — and a None status, which every later event treats as PENDING. So it may sort
    anywhere among the folded events: folded last, it gives what the time-ordered fold
    gives (``test_resuming_the_fold_from_the_stored_row_equals_a_full_fold`` checks this
    over random histories). This is the seed's late SIGNAL_CREATED, timed before the
    ENTRY and MFE updates it arrives after."""
    last = stored["last_event_id"]
    first_created = stored.get("created_at") is None
    new = [e for e in recent if e.event_id > last]
    placed = [e.event_time for e in new if not (first_created and e.event_type == "SIGNAL_CREATED")]
    unseen = any(after < e.event_id <= last for e in recent)
    return EventSpan(stored["folded_until"], min(placed, default=None), unseen, bool(new))


def mean_confidence(provenance: Mapping[str, Any]) -> float | None:
    """The mean confidence over a row's field provenance (``signals.data_confidence``)."""
    values = [float(v["confidence"]) for v in provenance.values() if "confidence" in v]
    return sum(values) / len(values) if values else None


def merge_with_existing(
    projected: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The projected row with the sync-owned columns and provenance of ``existing`` kept.

    A shared column (``SHARED_COLUMNS``) that no event carries keeps the sync's value."""
    merged = dict(projected)
    if existing is None:
        return merged
    old_provenance: Mapping[str, Any] = existing.get("field_provenance") or {}
    provenance = {k: v for k, v in old_provenance.items() if k not in _PROVENANCED}
    for column in SHARED_COLUMNS:
        if merged[column] is None and existing.get(column) is not None:
            kept = old_provenance.get(column)
            if kept is not None and kept.get("tier") != "event":
                merged[column] = existing[column]
                provenance[column] = kept
    provenance.update(projected["field_provenance"])
    merged["field_provenance"] = provenance
    merged["data_confidence"] = mean_confidence(provenance)
    return merged


# --- storage ------------------------------------------------------------------------------


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
    committed before the cursor passed it (:mod:`~alphapulse_dagster.log_horizon`), so it
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


def _is_inferred_cancel(row: Mapping[str, Any]) -> bool:
    return (
        row.get("status") == CANCELLED
        and row.get("status_reason") == EXPIRED
        and float(row.get("status_confidence") or 1.0) < 1.0
    )


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
        if _is_inferred_cancel(old) and row["status"] in (CONFIRMED, CLOSED):
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

    ``head``: the log's safe head (:func:`alphapulse_dagster.log_horizon.safe_head`),
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
    (:func:`alphapulse_dagster.log_horizon.safe_head`) when other processes may be
    appending, as for :func:`project_log`. Every event this transaction sees is folded;
    those past ``head`` are folded again by the next projection (a re-fold, idempotent),
    and an id below ``head`` still uncommitted is not skipped. ``None``: ``max(event_id)``
    as this transaction sees it (one writer at a time)."""
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
