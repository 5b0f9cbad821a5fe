"""The local append-only spool: where a validated webhook event goes when the database is
unavailable (or while earlier spooled events still wait), so that a 503 never means "lost".

One framed record per line (``spool_record.py``: the format, its encoder and decoder), so
a torn write can only ever cost itself. An append is one ``write`` under an ``flock``,
starts on a fresh line (a newline is put first when the file does not end with one — the
tail of a write cut by a crash or by a full disk), is cut back to the old size when the
write fails, and is ``fsync``-ed before it returns: the caller says "spooled" only after
:meth:`Spool.append` returned.

Replay is incremental: ``<spool>.offset`` holds the byte offset of the first record not yet
in the database. :meth:`Spool.replay_step` reads the next records from there, appends them
through :func:`append_events` (idempotent on the idempotency key, so a step repeated after
a crash inserts nothing twice) and only then moves the offset; once the offset reaches the
end, the file is emptied. Its cost is one chunk, whatever the spool's size.

Dead letters: an unreadable record, or one the database refuses for a reason other than
being unavailable, is written to ``<spool>.dead`` (one JSON line each: reason, offset, the
record) before the offset moves past it. That file is never deleted or rewritten by the
server; :meth:`Spool.dead_letters` counts it for ``/healthz`` and the health report.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.sync.events import Appended, NewEvent, append_events
from alphapulse_dagster.webhooks.spool_record import (
    UnreadableRecord,
    dead_letter,
    decode_record,
    encode_record,
)

log = logging.getLogger(__name__)

DEFAULT_SPOOL_PATH = Path(".alphapulse") / "spool" / "webhooks.jsonl"
SPOOL_PATH_VARIABLE = "ALPHAPULSE_SPOOL_PATH"
REPLAY_CHUNK = 2000  # records per replay step (one transaction)
READ_BYTES = 4 << 20  # bytes read per step (a record is at most ~70 KB)

# Errors that mean "the database is not reachable right now" (retry later), as opposed to
# "this row cannot be stored" (which retrying will not fix).
STORAGE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)

# Opens the transaction a replay step writes in (the server passes one that sets the
# write timeouts); default: ``engine.begin()``.
Transaction = Callable[[], Any]


def spool_path(environ: Mapping[str, str] | None = None) -> Path:
    """``ALPHAPULSE_SPOOL_PATH``, else :data:`DEFAULT_SPOOL_PATH` (relative to the working
    directory, like the embedded database)."""
    env = os.environ if environ is None else environ
    return Path(env.get(SPOOL_PATH_VARIABLE) or DEFAULT_SPOOL_PATH)


@dataclass(frozen=True)
class ReplayStep:
    """One replay step: events stored (``appended``, in spool order), records set aside as
    dead letters, and whether the spool is now empty (``drained``)."""

    appended: tuple[Appended, ...] = ()
    dead: int = 0
    drained: bool = False


class Spool:
    """An append-only file of framed events waiting for the database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._dead_count: tuple[int, int] = (-1, 0)  # (file size, lines) of the last count

    @property
    def offset_path(self) -> Path:
        return self.path.with_name(self.path.name + ".offset")

    @property
    def dead_letter_path(self) -> Path:
        """Records that could not be read or stored: kept for an operator, never deleted."""
        return self.path.with_name(self.path.name + ".dead")

    @property
    def _replay_lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".replay.lock")

    # --- appending ------------------------------------------------------------------------

    @contextmanager
    def _append_lock(self) -> Iterator[int]:
        """The spool file open for appending, under an exclusive ``flock`` (also held to
        check the end of the file and to empty it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if created:
                _fsync_dir(self.path.parent)
            yield fd
        finally:
            os.close(fd)  # releases the flock

    def append(self, events: Sequence[NewEvent]) -> None:
        """Append ``events`` as one write, durably (fsynced before returning). Raises
        ``OSError`` (e.g. ENOSPC) after cutting the file back to where it was, so a failed
        append leaves nothing behind that could be taken for a record."""
        if not events:
            return
        data = b"".join(encode_record(event) for event in events)
        with self._append_lock() as fd:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # the tail of a torn write: never glue a record to it
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)
                except OSError:  # pragma: no cover - the next append starts a new line
                    pass
                raise

    # --- what is waiting ------------------------------------------------------------------

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _offset(self, size: int) -> int:
        try:
            offset = int(self.offset_path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.warning("spool offset %s unreadable; replaying from the start", self.offset_path)
            return 0
        # larger than the file: the file was emptied after the offset was written
        return offset if 0 <= offset <= size else 0

    def pending(self) -> int:
        """Bytes waiting to be replayed (0 when the spool is empty or absent)."""
        size = self._size()
        return size - self._offset(size) if size else 0

    def pending_events(self) -> int:
        """Records (readable or not) waiting to be replayed."""
        size = self._size()
        if not size:
            return 0
        with open(self.path, "rb") as handle:
            handle.seek(self._offset(size))
            return sum(1 for line in handle if line.strip())

    def dead_letters(self) -> int:
        """Records set aside in the dead-letter file (a count of its lines)."""
        try:
            size = self.dead_letter_path.stat().st_size
        except FileNotFoundError:
            return 0
        if size != self._dead_count[0]:
            with open(self.dead_letter_path, "rb") as handle:
                self._dead_count = (size, sum(1 for line in handle if line.strip()))
        return self._dead_count[1]

    def status(self) -> dict[str, Any]:
        """What the health report shows of the spool."""
        return {
            "pending_bytes": self.pending(),
            "dead_letters": self.dead_letters(),
            "dead_letter_file": str(self.dead_letter_path),
        }

    # --- replay ---------------------------------------------------------------------------

    def replay(
        self, engine: Engine, now: datetime | None = None, begin: Transaction | None = None
    ) -> int:
        """Replay everything waiting, step by step; returns the number of events stored
        (duplicates included). A database outage propagates and keeps the rest."""
        total = 0
        while True:
            step = self.replay_step(engine, now, begin)
            total += len(step.appended)
            if step.drained:
                return total

    def replay_step(
        self,
        engine: Engine,
        now: datetime | None = None,
        begin: Transaction | None = None,
        max_records: int = REPLAY_CHUNK,
    ) -> ReplayStep:
        """Store the next ``max_records`` waiting records in one transaction and move the
        offset past them. ``STORAGE_UNAVAILABLE`` propagates with the offset unmoved.
        Another process replaying the same spool ⇒ an empty step, not drained."""
        with self._replay_lock() as held:
            if not held:
                return ReplayStep()
            size = self._size()
            offset = self._offset(size)
            lines, end = self._read_records(offset, size)
            if not lines and end == offset:
                return ReplayStep(drained=self._empty_if_replayed(offset))
            events: list[tuple[int, NewEvent]] = []
            dead: list[dict[str, Any]] = []
            for line_offset, line in lines[:max_records]:
                try:
                    events.append((line_offset, decode_record(line)))
                except UnreadableRecord as exc:
                    dead.append(dead_letter(str(exc), line_offset, line))
            if len(lines) > max_records:
                end = lines[max_records][0]
            stored, refused = _store(engine, events, now or utcnow(), begin)
            dead += [dead_letter(reason, at, line) for at, line, reason in refused]
            self._write_dead_letters(dead)
            self._write_offset(end)
            if dead:
                log.error("%d spool records set aside in %s", len(dead), self.dead_letter_path)
            return ReplayStep(appended=tuple(stored), dead=len(dead))

    @contextmanager
    def _replay_lock(self) -> Iterator[bool]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._replay_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _read_records(self, offset: int, size: int) -> tuple[list[tuple[int, bytes]], int]:
        """Complete lines from ``offset`` (each with its byte offset) and the offset just
        past the last of them. A tail without a newline is a write in progress — or, when
        it is still there under the append lock, a torn one, returned as a line to set
        aside."""
        if offset >= size:
            return [], offset
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(READ_BYTES)
            while b"\n" not in data and offset + len(data) < size:
                more = handle.read(READ_BYTES)  # a line longer than one read: corrupt
                if not more:
                    break
                data += more
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            with self._append_lock() as fd:  # no append in flight while this is held
                if os.fstat(fd).st_size == offset + len(data):
                    return [(offset, data)], offset + len(data)  # torn: never completed
            return [], offset
        lines: list[tuple[int, bytes]] = []
        position = offset
        for line in data[:cut].split(b"\n")[:-1]:
            if line.strip():
                lines.append((position, line))
            position += len(line) + 1
        return lines, offset + cut

    def _empty_if_replayed(self, offset: int) -> bool:
        """Empty the spool once every record is replayed; False when one arrived since."""
        if offset == 0:
            return self._size() == 0
        with self._append_lock() as fd:
            if os.fstat(fd).st_size != offset:
                return False
            # offset first: a crash between the two replays again (idempotent), never skips
            self._write_offset(0)
            os.ftruncate(fd, 0)
            os.fsync(fd)
        return True

    def _write_offset(self, offset: int) -> None:
        temporary = self.offset_path.with_name(self.offset_path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, str(offset).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.offset_path)
        _fsync_dir(self.path.parent)

    def _write_dead_letters(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = b"".join(
            json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n" for record in records
        )
        fd = os.open(self.dead_letter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def _store(
    engine: Engine,
    events: list[tuple[int, NewEvent]],
    now: datetime,
    begin: Transaction | None,
) -> tuple[list[Appended], list[tuple[int, bytes, str]]]:
    """Append ``events`` in one transaction; when the database refuses the batch, one by
    one, returning the refused ones (offset, record, reason) for the dead-letter file."""
    if not events:
        return [], []
    open_transaction = begin or engine.begin

    def append(batch: list[NewEvent]) -> list[Appended]:
        with open_transaction() as connection:
            assert isinstance(connection, Connection)
            return append_events(connection, batch, now)

    try:
        return append([event for _, event in events]), []
    except STORAGE_UNAVAILABLE:
        raise
    except sa_exc.SQLAlchemyError:
        pass
    stored: list[Appended] = []
    refused: list[tuple[int, bytes, str]] = []
    for offset, event in events:
        try:
            stored += append([event])
        except STORAGE_UNAVAILABLE:
            raise
        except sa_exc.SQLAlchemyError as exc:
            reason = f"refused by the database: {type(exc).__name__}"
            refused.append((offset, encode_record(event).rstrip(b"\n"), reason))
    return stored, refused


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
