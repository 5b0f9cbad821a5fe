"""The spool's record format: one framed line per webhook event, so that a torn write can
only ever cost itself::

    AP1 <length> <crc32 hex> <JSON of the NewEvent>\\n

``length`` is the JSON's size in bytes and ``crc32`` its checksum; a line whose frame does
not match is *unreadable* and goes to the dead-letter file (:func:`dead_letter`) instead of
the database. The file itself — appends, offsets, replay — is ``spool.py``.
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import datetime
from typing import Any

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.sync.events import NewEvent

MAGIC = b"AP1"


class UnreadableRecord(ValueError):
    """A spool line whose frame, checksum or content does not decode to an event."""


def encode_record(event: NewEvent) -> bytes:
    """One framed spool line for ``event`` (``AP1 <length> <crc32> <json>\\n``)."""
    record = {
        "v": 2,
        "source": event.source,
        "event_type": event.event_type,
        "signal_id": event.signal_id,
        "trade_id": event.trade_id,
        "symbol": event.symbol,
        "event_time": event.event_time.isoformat(),
        "received_at": event.received_at.isoformat() if event.received_at else None,
        "payload": dict(event.payload),
        "idempotency_key": event.idempotency_key,
    }
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"%s %d %08x %s\n" % (MAGIC, len(body), zlib.crc32(body), body)


def decode_record(line: bytes) -> NewEvent:
    """The event in one spool line (without its newline). Raises :class:`UnreadableRecord`
    naming what is wrong. A bare JSON line is a record of the previous, unframed format."""
    if line.startswith(b"{"):
        body = line
    else:
        parts = line.split(b" ", 3)
        if len(parts) != 4 or parts[0] != MAGIC:
            raise UnreadableRecord("no record frame")
        body = parts[3]
        try:
            length, checksum = int(parts[1]), int(parts[2], 16)
        except ValueError:
            raise UnreadableRecord("bad record frame") from None
        if length != len(body):
            raise UnreadableRecord(f"length {len(body)} bytes, frame says {length}")
        if checksum != zlib.crc32(body):
            raise UnreadableRecord("checksum mismatch")
    try:
        record: dict[str, Any] = json.loads(body)
        return NewEvent(
            source=record["source"],
            event_type=record["event_type"],
            signal_id=record["signal_id"],
            trade_id=record.get("trade_id"),
            symbol=record["symbol"],
            event_time=datetime.fromisoformat(record["event_time"]),
            received_at=(
                datetime.fromisoformat(record["received_at"]) if record.get("received_at") else None
            ),
            payload=record["payload"],
            idempotency_key=record["idempotency_key"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UnreadableRecord(f"bad record content: {type(exc).__name__}: {exc}") from None


def dead_letter(reason: str, offset: int, line: bytes) -> dict[str, Any]:
    """A dead-letter line for the unreadable or refused record ``line`` found at byte
    ``offset`` of the spool: why, where, and the record (base64 when not UTF-8)."""
    record: dict[str, Any] = {"at": utcnow().isoformat(), "reason": reason, "offset": offset}
    try:
        record["record"] = line.decode("utf-8")
    except UnicodeDecodeError:
        record["record_base64"] = base64.b64encode(line).decode("ascii")
    return record
