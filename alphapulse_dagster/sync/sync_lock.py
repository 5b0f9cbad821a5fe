"""The hybrid-sync lock: cycles never overlap, whoever starts them (the Dagster job, the
sensor's runs, ``alphapulse sync``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.tables import sync_locks

log = logging.getLogger(__name__)

LOCK_NAME = "hybrid_sync"
# pg_advisory_lock key: a fixed 64-bit number ("ALPHSYNC")
PG_LOCK_KEY = 0x414C50485359_4E43 & 0x7FFFFFFFFFFFFFFF
SQLITE_LEASE = timedelta(minutes=10)


class SyncBusy(RuntimeError):
    """Another sync holds the lock and did not release it within the wait."""


@contextmanager
def sync_lock(engine: Engine, holder: str, wait_seconds: float = 30.0) -> Iterator[None]:
    """Hold the hybrid-sync lock for the block; wait up to ``wait_seconds`` for it, then
    raise :class:`SyncBusy`. Postgres: a session advisory lock on a dedicated connection
    (released even if the process dies). SQLite: a lease row in ``sync_locks``."""
    deadline = time.monotonic() + wait_seconds
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            while True:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
                acquired = bool(got.scalar())
                conn.commit()
                if acquired:
                    break
                if time.monotonic() >= deadline:
                    raise SyncBusy("another hybrid sync is running (advisory lock held)")
                time.sleep(0.1)
            try:
                yield
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                    conn.commit()
                except DBAPIError as exc:
                    # the session died (e.g. Postgres restarted): the server released the
                    # session lock with it; don't let this hide the cycle's own error
                    log.warning("advisory unlock failed (%s); lock went with the session", exc)
        finally:
            conn.close()
        return

    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    while True:
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(insert(sync_locks).values(name=LOCK_NAME).on_conflict_do_nothing())
            taken = conn.execute(
                update(sync_locks)
                .where(
                    sync_locks.c.name == LOCK_NAME,
                    (sync_locks.c.holder.is_(None)) | (sync_locks.c.locked_until < now),
                )
                .values(holder=holder, locked_until=now + SQLITE_LEASE)
            ).rowcount
        if taken:
            break
        if time.monotonic() >= deadline:
            raise SyncBusy("another hybrid sync is running (lease held)")
        time.sleep(0.1)
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(
                update(sync_locks)
                .where(sync_locks.c.name == LOCK_NAME, sync_locks.c.holder == holder)
                .values(holder=None, locked_until=None)
            )
