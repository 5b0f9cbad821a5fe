"""Engines for the app database: SQLite (WAL, the embedded default) or Postgres (psycopg 3)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite:///.alphapulse/alphapulse.db"


def database_url(url: str | None = None) -> str:
    """The app database URL: the argument, else ``ALPHAPULSE_DATABASE_URL``, else the
    embedded SQLite file. ``postgres://`` and bare ``postgresql://`` select psycopg 3."""
    chosen = url or os.environ.get("ALPHAPULSE_DATABASE_URL") or DEFAULT_DATABASE_URL
    if chosen.startswith("postgres://"):
        chosen = "postgresql+psycopg://" + chosen[len("postgres://") :]
    elif chosen.startswith("postgresql://"):
        chosen = "postgresql+psycopg://" + chosen[len("postgresql://") :]
    return chosen


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create the engine. SQLite files get their folder created and WAL mode; Postgres gets
    ``pool_pre_ping`` so a restarted server costs one failed checkout, not a failed run,
    ``jit=off`` and the session time zone UTC."""
    resolved = database_url(url)
    parsed = make_url(resolved)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # JIT compilation costs 100-300 ms on the sync's and the API's short aggregate queries
    # and never pays back at this size: off for the app's sessions
    # Session time zone UTC: psycopg then returns timestamptz values with ``timezone.utc``
    # (for a named zone such as the common server default 'Etc/UTC' it attaches a
    # ZoneInfo, and every value read costs a conversion); instants are unchanged.
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("options", "-c jit=off -c timezone=UTC")
    # JSONB documents (payloads, field provenance) decode with orjson: ~3x json.loads, and
    # a sync cycle decodes thousands of them
    kwargs.setdefault("json_deserializer", orjson.loads)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(resolved, **kwargs)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def derived_write(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for writes of *derived* data — what the hybrid sync computes from
    the event log (registry rows, provenance, audit rows, gaps, cursors, health rows, and
    the inferred expiry events, which the next cycle would infer again).

    On Postgres the transaction commits with ``synchronous_commit = off``: COMMIT returns
    without waiting for the WAL flush (~5-10 ms on this class of disk, ~10 commits per sync
    cycle). A server crash can lose the last few hundred milliseconds of such commits —
    never half of one — and the next cycle recomputes them from the log, which itself is
    written with full durability (the webhook's 200 waits for its flush)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
        yield conn


@dataclass(frozen=True)
class WriteTimeouts:
    """Bounds on one webhook-path write transaction on Postgres (SPEC §14: a locked or hung
    database is an outage, not a wait). ``lock_ms``: the longest wait for a row or table
    lock (``lock_timeout``); ``statement_ms``: the longest one statement may run
    (``statement_timeout``). Either expiring raises ``OperationalError``, which the caller
    treats as "storage unavailable"."""

    lock_ms: int = 500
    statement_ms: int = 1000


@contextmanager
def bounded_write(engine: Engine, timeouts: WriteTimeouts) -> Iterator[Connection]:
    """``engine.begin()`` with :class:`WriteTimeouts` set for this transaction only (one
    round trip; SQLite has no such settings and waits at most its ``busy_timeout``)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT set_config('lock_timeout', :lock, true), "
                    "set_config('statement_timeout', :statement, true)"
                ),
                {"lock": f"{timeouts.lock_ms}ms", "statement": f"{timeouts.statement_ms}ms"},
            )
        yield conn
