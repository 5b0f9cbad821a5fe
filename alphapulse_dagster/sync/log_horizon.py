"""The safe head of ``signal_events``: the highest ``event_id`` a cursor over the log may
advance to.

Why: on Postgres ``event_id`` comes from a sequence, and a sequence hands ids out when a
row is inserted, not when its transaction commits. T1 can hold id 100 uncommitted while
T2 commits id 101; a reader that takes ``max(event_id)`` (101) as its new cursor never
sees 100 once T1 commits. For the ``lifecycle`` projection this means the event is never
folded (only a full rebuild would see it).

The barrier (:func:`safe_head`): in its own short transaction, ``LOCK TABLE signal_events
IN SHARE MODE``, then ``SELECT max(event_id)``, then commit at once. SHARE conflicts with
ROW EXCLUSIVE, which every inserting transaction takes on the table before its
``nextval`` and keeps until it ends. So the lock is granted only when every in-flight
inserting transaction has committed or rolled back, and while the lock is held no new
insert can start. Every id up to the max read then belongs to a finished transaction; a
rolled-back id is a gap that never appears. Readers use the head in a *later*
transaction, never under the lock.

What it costs: while the barrier waits and during the one SELECT, new inserts queue
behind the lock. Writers here keep short transactions (one group commit or one bar of
signals), so this is normally microseconds, or the rest of one in-flight commit. A long
writer is bounded by ``lock_timeout_ms``: after it the barrier gives up, logs a warning
and returns ``None``. The caller then does not advance, and the next cycle tries again.
Ingestion waits at most the lock timeout.

Requirements: the sequence must not cache ids per session (``CACHE 1``, the default for
identity and serial columns), and the role must be allowed SHARE mode on the table
(owner, or UPDATE / DELETE / TRUNCATE). The app's role owns its tables.

SQLite: one writer at a time, so ids are committed in order and ``max(event_id)`` is
already safe. There is no lock.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from alphapulse_dagster.db.tables import signal_events

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_MS = 2000
# SQLSTATE of "canceling statement due to lock timeout"
LOCK_NOT_AVAILABLE = "55P03"


def log_head(conn: Connection) -> int:
    """``max(event_id)`` as this transaction sees it (0 for an empty log) — safe as a
    cursor's new position only behind the barrier of :func:`safe_head`, or with one
    writer at a time."""
    return int(conn.execute(select(func.max(signal_events.c.event_id))).scalar() or 0)


def signals_after(conn: Connection, after: int, head: int) -> list[str]:
    """Signals with an event in ``(after, head]`` — a primary-key range over the
    append-only log, never a scan of the (update-heavy) registry."""
    query = (
        select(signal_events.c.signal_id)
        .where(signal_events.c.event_id > after, signal_events.c.event_id <= head)
        .distinct()
    )
    return [r[0] for r in conn.execute(query)]


def safe_head(engine: Engine, lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS) -> int | None:
    """The highest ``event_id`` such that every id up to it belongs to a finished
    transaction (0 for an empty log), read in a transaction of its own that is committed
    before this returns. ``None`` when the barrier timed out after ``lock_timeout_ms``
    (a long-running writer); the caller should then not advance its cursor.

    Takes an Engine, not a Connection, because the barrier must not share a transaction
    with the reads that use its result: the lock would then be held for all of them."""
    if lock_timeout_ms <= 0:  # 0 would disable lock_timeout and wait forever
        raise ValueError(f"lock_timeout_ms must be positive, not {lock_timeout_ms}")
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            return log_head(conn)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
            table = conn.dialect.identifier_preparer.format_table(signal_events)
            conn.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
            return log_head(conn)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        log.warning(
            "signal_events barrier: a writer held the table past %d ms; "
            "not advancing this time (the next cycle retries)",
            lock_timeout_ms,
        )
        return None
