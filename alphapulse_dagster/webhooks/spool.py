"""The local append-only spool: where a validated webhook event goes when the database is
unavailable, so that a 503 never means "lost".

One JSON line per event (the :class:`NewEvent` to append, with its original
``received_at``), written with ``fsync`` before the 503 is answered. :meth:`Spool.replay`
appends the spooled events in file order through :func:`append_events` — idempotent on the
idempotency key, so a replay interrupted after a commit and run again inserts nothing
twice — and empties the file only after every line is committed. An ``flock`` keeps
several server processes sharing one spool file from interleaving or double-replaying.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from alphapulse_dagster.sync.events import NewEvent, append_events

log = logging.getLogger(__name__)

DEFAULT_SPOOL_PATH = Path(".alphapulse") / "spool" / "webhooks.jsonl"
REPLAY_CHUNK = 500

# Errors that mean "the database is not reachable right now" (retry later), as opposed to
# "this row cannot be stored" (which retrying will not fix).
STORAGE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


def _event_to_line(event: NewEvent) -> str:
    record = {
        "v": 1,
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
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def _line_to_event(line: str) -> NewEvent:
    record: dict[str, Any] = json.loads(line)
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


class Spool:
    """An append-only JSONL file of events waiting for the database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def dead_letter_path(self) -> Path:
        """Where a spooled event goes that the database refuses for a reason other than
        being unavailable (kept for an operator, never silently dropped)."""
        return self.path.with_name(self.path.name + ".dead")

    @contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def append(self, events: Sequence[NewEvent]) -> None:
        """Append ``events`` durably (written and fsynced before returning)."""
        if not events:
            return
        with self._locked() as handle:
            handle.seek(0, os.SEEK_END)
            handle.write("".join(_event_to_line(event) for event in events))
            handle.flush()
            os.fsync(handle.fileno())

    def pending(self) -> int:
        """Bytes waiting in the spool (0 when empty or absent)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def pending_events(self) -> int:
        if not self.pending():
            return 0
        with self._locked() as handle:
            handle.seek(0)
            return sum(1 for line in handle if line.strip())

    def replay(self, engine: Engine, now: datetime) -> int:
        """Append every spooled event in file order, then empty the spool; returns how many
        lines were replayed. A database error propagates and leaves the spool intact. A line
        that cannot be parsed (a write torn by a crash, never acknowledged) is skipped with
        a warning."""
        if not self.pending():
            return 0
        with self._locked() as handle:
            handle.seek(0)
            events: list[NewEvent] = []
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    events.append(_line_to_event(line))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("spool %s line %d unreadable, skipped: %s", self.path, number, exc)
            for start in range(0, len(events), REPLAY_CHUNK):
                self._replay_chunk(engine, events[start : start + REPLAY_CHUNK], now)
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
        if events:
            log.info("replayed %d spooled webhook events from %s", len(events), self.path)
        return len(events)

    def _replay_chunk(self, engine: Engine, chunk: list[NewEvent], now: datetime) -> None:
        try:
            with engine.begin() as connection:
                append_events(connection, chunk, now)
            return
        except STORAGE_UNAVAILABLE:
            raise
        except sa_exc.SQLAlchemyError:
            pass
        # one event in the chunk is refused: store the others one by one, keep the refused
        for event in chunk:
            try:
                with engine.begin() as connection:
                    append_events(connection, [event], now)
            except STORAGE_UNAVAILABLE:
                raise
            except sa_exc.SQLAlchemyError as exc:
                log.error(
                    "spooled event %s refused by the database (%s); kept in %s",
                    event.idempotency_key,
                    type(exc).__name__,
                    self.dead_letter_path,
                )
                with open(self.dead_letter_path, "a", encoding="utf-8") as dead:
                    dead.write(_event_to_line(event))
