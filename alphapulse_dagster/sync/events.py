"""The append-only lifecycle log, ``signal_events``.

Everything that happens to a signal is an event: webhooks from TradingView, the MTF
pipeline's own SIGNAL_CREATED / ENTRY / CANCELLED, and the sync's inferred expiries.
Appending is idempotent on ``idempotency_key``: a resend returns the original ``event_id``
and is reported as a duplicate, never a second row.

A webhook's key is the SHA-256 of its canonical payload (SPEC §8). Before migration 0006
an ``alert_id`` (or ``id``) *replaced* the hash (``alert:<value>``), so distinct alerts
carrying the same static text were answered ``duplicate`` and dropped. Rows keep the keys
they were stored with; a resend of such an old event now has a new key, so
:func:`append_events` also looks for its old ``alert:`` key and counts it a duplicate only
when that row's payload is the same event (:func:`legacy_alert_key`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.tables import signal_events


class EventType(StrEnum):
    """What can happen to a signal — every ``signal_events.event_type``. Each has one fold
    handler in ``lifecycle.py`` (:data:`~alphapulse_dagster.sync.lifecycle.HANDLERS`); the
    webhook payload accepts exactly these."""

    SIGNAL_CREATED = "SIGNAL_CREATED"  # the indicator (or the MTF pipeline) saw a setup
    ENTRY = "ENTRY"  # the trade was entered: confirms the signal
    MFE_UPDATE = "MFE_UPDATE"  # a running trade's excursion snapshot
    EXIT = "EXIT"  # the trade closed (target, stop, breakeven, manual)
    CANCELLED = "CANCELLED"  # cancelled before entry (explicit, or an inferred expiry)


@dataclass(frozen=True)
class NewEvent:
    """One event to append. ``payload`` is stored as-is (never with a secret in it)."""

    source: str
    event_type: str
    signal_id: str
    symbol: str
    event_time: datetime
    payload: Mapping[str, Any]
    idempotency_key: str
    trade_id: str | None = None
    received_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Appended:
    event_id: int
    duplicate: bool


def canonical_json(payload: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace: the same payload always gives the same text."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


HASH_PREFIX = "sha256:"
# the sent spellings a stored webhook payload carries beside the normalised values
# (webhook_payload.DERIVED_KEYS): not part of the event's identity
_DERIVED_KEYS = ("time_raw", "timeframe_raw")


def payload_idempotency_key(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical payload without ``secret``: every other key counts,
    ``alert_id`` and ``id`` included (they narrow the key, never replace it)."""
    cleaned = {k: v for k, v in payload.items() if k != "secret"}
    return HASH_PREFIX + hashlib.sha256(canonical_json(cleaned).encode()).hexdigest()


def legacy_alert_key(event: NewEvent) -> str | None:
    """The key an event with an ``alert_id`` (or ``id``) was stored under before the key
    became a hash of the whole payload: ``alert:<value>``, or None."""
    if not event.idempotency_key.startswith(HASH_PREFIX):
        return None
    for key in ("alert_id", "id"):
        value = event.payload.get(key)
        if value not in (None, ""):
            return f"alert:{value}"[:128]
    return None


def _same_event(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def identity(payload: Mapping[str, Any]) -> str:
        return canonical_json({k: v for k, v in payload.items() if k not in _DERIVED_KEYS})

    return identity(stored) == identity(new)


def _legacy_duplicates(connection: Connection, events: Sequence[NewEvent]) -> dict[str, int]:
    """Event id of each new key whose event is a resend of a row stored under its old
    ``alert:`` key (:func:`legacy_alert_key`) with the same payload."""
    legacy: dict[str, list[NewEvent]] = defaultdict(list)
    for event in events:
        if key := legacy_alert_key(event):
            legacy[key].append(event)
    if not legacy:
        return {}
    found: dict[str, int] = {}
    rows = connection.execute(
        select(
            signal_events.c.event_id, signal_events.c.idempotency_key, signal_events.c.payload
        ).where(signal_events.c.idempotency_key.in_(list(legacy)))
    ).all()
    for event_id, old_key, payload in rows:
        for event in legacy[old_key]:
            if _same_event(payload or {}, event.payload):
                found[event.idempotency_key] = int(event_id)
    return found


def _insert(connection: Connection):  # type: ignore[no-untyped-def]
    if connection.dialect.name == "postgresql":
        return pg_insert(signal_events)
    return sqlite_insert(signal_events)


def _new_rows(
    connection: Connection, events: Sequence[NewEvent], received_at: datetime
) -> tuple[dict[str, NewEvent], dict[str, int], list[dict[str, Any]]]:
    """The first event of each key, the legacy resends among them, the rows to insert."""
    first_of_key: dict[str, NewEvent] = {}
    for event in events:
        first_of_key.setdefault(event.idempotency_key, event)
    # resends of events stored under a pre-0006 ``alert:`` key (one SELECT, only when a
    # batch carries an alert_id)
    resent = _legacy_duplicates(connection, list(first_of_key.values()))
    for key in resent:
        del first_of_key[key]
    rows = [
        {
            "source": event.source,
            "event_type": event.event_type,
            "signal_id": event.signal_id,
            "trade_id": event.trade_id,
            "symbol": event.symbol,
            "event_time": event.event_time,
            "received_at": event.received_at or received_at,
            "payload": dict(event.payload),
            "idempotency_key": event.idempotency_key,
        }
        for event in first_of_key.values()
    ]
    return first_of_key, resent, rows


def append_events_in_bulk(
    connection: Connection, events: Sequence[NewEvent], received_at: datetime
) -> None:
    """:func:`append_events` for a caller that needs no ``event_id`` back (a backfill's
    tens of thousands of MTF events): the same rows and duplicate rule, sent as one
    executemany without ``RETURNING``, which the driver pipelines (3-5x faster)."""
    rows = _new_rows(connection, events, received_at)[2]
    if rows:
        statement = _insert(connection).on_conflict_do_nothing(index_elements=["idempotency_key"])
        connection.execute(statement, rows)


def append_events(
    connection: Connection, events: Sequence[NewEvent], received_at: datetime
) -> list[Appended]:
    """Append ``events`` in order inside the caller's transaction; duplicates (same
    idempotency key, already in the log or earlier in this batch) are not inserted and
    report the existing ``event_id``.

    One multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` for the batch and one
    ``SELECT`` for the keys it skipped: a group commit of hundreds of webhooks costs two
    round trips, not hundreds."""
    if not events:
        return []
    first_of_key, resent, rows = _new_rows(connection, events, received_at)
    if not rows:
        return [Appended(resent[event.idempotency_key], duplicate=True) for event in events]
    statement = (
        _insert(connection)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(signal_events.c.event_id, signal_events.c.idempotency_key)
    )
    inserted: dict[str, int] = {
        key: int(event_id) for event_id, key in connection.execute(statement, rows).all()
    }
    existing: dict[str, int] = dict(resent)
    skipped = [key for key in first_of_key if key not in inserted]
    for start in range(0, len(skipped), 500):
        chunk = skipped[start : start + 500]
        existing.update(
            (key, int(event_id))
            for event_id, key in connection.execute(
                select(signal_events.c.event_id, signal_events.c.idempotency_key).where(
                    signal_events.c.idempotency_key.in_(chunk)
                )
            ).all()
        )
    results: list[Appended] = []
    seen: set[str] = set()
    for event in events:
        key = event.idempotency_key
        if key in inserted and key not in seen:
            results.append(Appended(inserted[key], duplicate=False))
        else:
            results.append(Appended(inserted.get(key) or existing[key], duplicate=True))
        seen.add(key)
    return results
