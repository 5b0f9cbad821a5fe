"""What reconciliation and gap detection read besides the registry rows, loaded once per
chunk of signals: the latest SIGNAL_CREATED and MFE_UPDATE of each signal, the candles
covering its trade and its open gaps (:class:`ChunkFacts`).

The planning functions (``reconcile.reconcile_rows``, ``gaps.plan_gaps``) are pure over
these facts; this module decides what to read. A signal whose events the fold just loaded
is answered from them where they can tell (:meth:`KnownEvents.latest`), the rest from the
database.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

from alphapulse_dagster.db.bulk import in_ids
from alphapulse_dagster.db.tables import signal_events, signal_gaps
from alphapulse_dagster.sync.events import EventType
from alphapulse_dagster.sync.excursions import SymbolCandles, load_candles
from alphapulse_dagster.sync.lifecycle import EventRow, KnownEvents


class LatestEvent(NamedTuple):
    """A signal's latest event of one type, payload included."""

    event_id: int
    event_time: datetime
    payload: Mapping[str, Any]


class OpenGap(NamedTuple):
    """A signal's open ``signal_gaps`` row, as stored."""

    gap_id: int
    kind: str
    weight: float


@dataclass(frozen=True)
class ChunkFacts:
    """The inputs of one chunk's reconciliation and gap detection, by signal id.

    ``with_created``: every signal that has a SIGNAL_CREATED. ``created``: the latest one
    with its payload — for the signals where a payload can change something (a field
    Tier 0 may fill, a gap whose fillability it decides); a signal in ``with_created`` but
    not here has one whose payload is not needed."""

    with_created: Collection[str] = frozenset()
    created: Mapping[str, LatestEvent] = field(default_factory=dict)
    mfe_snapshots: Mapping[str, LatestEvent] = field(default_factory=dict)
    candles: Mapping[str, SymbolCandles] = field(default_factory=dict)
    open_gaps: Mapping[str, Mapping[str, OpenGap]] = field(default_factory=dict)  # by type


def latest_events(
    conn: Connection, signal_ids: Sequence[str], event_type: str
) -> dict[str, LatestEvent]:
    """The latest ``event_type`` event of each signal (for SIGNAL_CREATED an index-only
    max over the partial index, then a primary-key fetch)."""
    if not signal_ids:
        return {}
    latest = (
        select(signal_events.c.signal_id, func.max(signal_events.c.event_id).label("event_id"))
        .where(
            signal_events.c.event_type == event_type,
            in_ids(conn, signal_events.c.signal_id, signal_ids),
        )
        .group_by(signal_events.c.signal_id)
        .subquery()
    )
    query = select(
        signal_events.c.signal_id,
        signal_events.c.event_id,
        signal_events.c.event_time,
        signal_events.c.payload,
    ).join(latest, signal_events.c.event_id == latest.c.event_id)
    return {
        r.signal_id: LatestEvent(int(r.event_id), r.event_time, r.payload or {})
        for r in conn.execute(query).all()
    }


def _latest_ids(conn: Connection, signal_ids: Sequence[str], event_type: str) -> dict[str, int]:
    """The id of each signal's latest ``event_type`` event (index only, no payloads)."""
    if not signal_ids:
        return {}
    query = (
        select(signal_events.c.signal_id, func.max(signal_events.c.event_id))
        .where(
            signal_events.c.event_type == event_type,
            in_ids(conn, signal_events.c.signal_id, signal_ids),
        )
        .group_by(signal_events.c.signal_id)
    )
    return {signal_id: int(event_id) for signal_id, event_id in conn.execute(query)}


def _payloads(conn: Connection, event_ids: Mapping[str, int]) -> dict[str, LatestEvent]:
    """The events of ``event_ids`` (signal id → event id), by primary key."""
    if not event_ids:
        return {}
    query = select(
        signal_events.c.signal_id,
        signal_events.c.event_id,
        signal_events.c.event_time,
        signal_events.c.payload,
    ).where(in_ids(conn, signal_events.c.event_id, list(event_ids.values())))
    return {
        r.signal_id: LatestEvent(int(r.event_id), r.event_time, r.payload or {})
        for r in conn.execute(query).all()
    }


def _told(
    signal_ids: Sequence[str], event_type: str, known: Mapping[str, KnownEvents]
) -> tuple[dict[str, EventRow | None], list[str]]:
    """What ``known`` tells of each signal's latest ``event_type`` event (None: it has
    none), and the ids only the database can answer for."""
    told: dict[str, EventRow | None] = {}
    ask: list[str] = []
    for signal_id in signal_ids:
        events = known.get(signal_id)
        found = False if events is None else events.latest(event_type)
        if found is False:
            ask.append(signal_id)
        else:
            told[signal_id] = found  # type: ignore[assignment]
    return told, ask


def _as_latest(event: EventRow) -> LatestEvent:
    return LatestEvent(event.event_id, event.event_time, event.payload)


@dataclass(frozen=True)
class FactsWanted:
    """Which facts a chunk's plan needs: the signals whose SIGNAL_CREATED payload can
    change something, and the trades to measure from candles (confirmed, not final)."""

    created_payload: Collection[str]
    to_measure: Sequence[Mapping[str, Any]]


def load_facts(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    wanted: FactsWanted,
    known: Mapping[str, KnownEvents],
    now: datetime,
    candle_symbols: dict[str, bool],
) -> ChunkFacts:
    """The facts of ``rows`` (see :class:`ChunkFacts`). ``known``: the events the fold
    loaded, by signal; ``candle_symbols``: which symbols have any candles, kept for the
    whole cycle."""
    ids = [r["signal_id"] for r in rows]
    told, ask = _told(ids, EventType.SIGNAL_CREATED, known)
    asked = _latest_ids(conn, ask, EventType.SIGNAL_CREATED)
    with_created = {i for i, event in told.items() if event is not None} | asked.keys()
    # (an event the fold loaded comes with its payload)
    created = {i: _as_latest(event) for i, event in told.items() if event is not None}
    created.update(_payloads(conn, {i: e for i, e in asked.items() if i in wanted.created_payload}))

    confirmed = [r["signal_id"] for r in rows if r["confirmed_at"] is not None]
    told_mfe, ask_mfe = _told(confirmed, EventType.MFE_UPDATE, known)
    snapshots = {i: _as_latest(e) for i, e in told_mfe.items() if e is not None}
    snapshots.update(latest_events(conn, ask_mfe, EventType.MFE_UPDATE))

    open_gaps: dict[str, dict[str, OpenGap]] = {}
    query = select(
        signal_gaps.c.gap_id,
        signal_gaps.c.signal_id,
        signal_gaps.c.gap_type,
        signal_gaps.c.kind,
        signal_gaps.c.weight,
    ).where(in_ids(conn, signal_gaps.c.signal_id, ids), signal_gaps.c.resolved_at.is_(None))
    for r in conn.execute(query).all():
        gap = OpenGap(int(r.gap_id), r.kind, float(r.weight))
        open_gaps.setdefault(r.signal_id, {})[r.gap_type] = gap
    return ChunkFacts(
        with_created=with_created,
        created=created,
        mfe_snapshots=snapshots,
        candles=load_candles(conn, wanted.to_measure, now, candle_symbols),
        open_gaps=open_gaps,
    )
