"""Helpers for the fault drills (tests/test_fault_drills.py): a seeded event log, cloned
databases, a comparable snapshot of the sync's state, the registry-vs-audit consistency
check, a private throwaway Redis, and a Postgres restart that always brings the server
back."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from alphapulse_dagster.db.tables import signal_events, signal_gaps, signals, sync_audit_log
from alphapulse_dagster.sync.events import NewEvent, append_events, payload_idempotency_key
from tests.live_server import free_port

HTF = {"4h": "BULLISH", "1d": "NEUTRAL"}
SYNC_TIERS = ("0", "1", "2", "3")


# --- a seeded log ---------------------------------------------------------------------------


def _event(kind: str, symbol: str, trade_id: str, at: datetime, **payload: Any) -> NewEvent:
    body = {"event": kind, "trade_id": trade_id, "symbol": symbol, "time": at.isoformat()}
    body.update(payload)
    return NewEvent(
        source="tradingview",
        event_type=kind,
        signal_id=f"{symbol}:{trade_id}",
        trade_id=trade_id,
        symbol=symbol,
        event_time=at,
        payload=body,
        idempotency_key=payload_idempotency_key(body),
    )


def seed_events(n_signals: int, now: datetime) -> list[NewEvent]:
    """A mixed log over the last four days (hour-aligned, far from any expiry boundary, so
    two syncs a minute apart see the same world): created → entry → MFE updates → exit;
    entry without SIGNAL_CREATED; created long ago and never filled (expires); created an
    hour ago (still pending); created then explicitly cancelled."""
    base = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
    out: list[NewEvent] = []
    for n in range(n_signals):
        symbol = f"SYM{n % 50:02d}USDT"
        long = n % 2 == 0
        group = n % 10
        start = base + timedelta(minutes=(n * 7) % (3 * 24 * 60))
        if group == 9:
            start = now.replace(second=0, microsecond=0) - timedelta(hours=1)
        trade_id = start.strftime("%Y%m%d_%H%M%S_") + ("LONG" if long else "SHORT") + f"_{n}"
        entry_price = 100.0 + n % 37
        stop = entry_price * (0.98 if long else 1.02)
        created = {
            "timeframe": "1h",
            "direction": "BULLISH" if long else "BEARISH",
            "htf_alignment": HTF,
            "session": "LONDON",
            "market_state": "TRENDING",
        }
        entry = {
            "timeframe": "1h",
            "direction": "LONG" if long else "SHORT",
            "entry_price": entry_price,
            "stop_loss": stop,
        }
        if group in (0, 1, 2, 3, 4):  # full trade
            out.append(_event("SIGNAL_CREATED", symbol, trade_id, start, **created))
            out.append(_event("ENTRY", symbol, trade_id, start + timedelta(hours=1), **entry))
            for k in range(2):
                at = start + timedelta(hours=2 + k)
                out.append(_event("MFE_UPDATE", symbol, trade_id, at, mfe=0.4 * k, mae=0.1))
            if group != 4:
                exit_at = start + timedelta(hours=6)
                out.append(
                    _event(
                        "EXIT",
                        symbol,
                        trade_id,
                        exit_at,
                        exit_price=entry_price,
                        exit_reason="TARGET",
                    )
                )
        elif group in (5, 6):  # confirmed without SIGNAL_CREATED: tiers 3 and 2
            out.append(_event("ENTRY", symbol, trade_id, start + timedelta(hours=1), **entry))
        elif group == 7:  # never filled: the cancellation detector expires it
            out.append(_event("SIGNAL_CREATED", symbol, trade_id, start, **created))
        elif group == 8:  # explicit cancel
            out.append(_event("SIGNAL_CREATED", symbol, trade_id, start, **created))
            out.append(
                _event("CANCELLED", symbol, trade_id, start + timedelta(hours=1), reason="manual")
            )
        else:  # fresh, still pending
            out.append(_event("SIGNAL_CREATED", symbol, trade_id, start, **created))
    return out


def seed(url: str, n_signals: int, now: datetime) -> int:
    engine = sa.create_engine(url)
    events = seed_events(n_signals, now)
    with engine.begin() as conn:
        for k in range(0, len(events), 2000):
            append_events(conn, events[k : k + 2000], now)
    engine.dispose()
    return len(events)


# --- databases ------------------------------------------------------------------------------


@contextmanager
def cloned_database(admin: sa.Engine, source_url: str) -> Iterator[str]:
    """A copy of ``source_url``'s database (``CREATE DATABASE … TEMPLATE``), dropped after."""
    url = sa.engine.make_url(source_url)
    name = f"alphapulse_clone_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- state of a sync, comparable across runs ----------------------------------------------

# registry columns that depend on the data only (not on when or by which run it was synced)
STATE_COLUMNS = [
    c.name
    for c in signals.columns
    if c.name not in ("updated_at", "field_provenance", "first_event_id", "last_event_id")
]


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _provenance(doc: dict[str, Any] | None) -> dict[str, Any]:
    return {
        field: {k: _norm(v) for k, v in sorted(info.items()) if k in ("tier", "confidence")}
        for field, info in sorted((doc or {}).items())
        if isinstance(info, dict)
    }


def snapshot(url: str) -> dict[str, Any]:
    """What a clean sync and a drilled sync of the same log must agree on: every registry
    row (values + per-field tier/confidence), the open gaps, the audit trail as a multiset of
    (signal, field, new value, tier) — run ids and wall-clock times excluded — and the log
    (events are never lost or doubled, inferred expiries included)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        registry = {
            row["signal_id"]: {
                **{name: _norm(row[name]) for name in STATE_COLUMNS},
                "field_provenance": _provenance(row["field_provenance"]),
            }
            for row in conn.execute(sa.select(signals)).mappings()
        }
        gaps = sorted(
            tuple(r)
            for r in conn.execute(
                sa.select(signal_gaps.c.signal_id, signal_gaps.c.gap_type).where(
                    signal_gaps.c.resolved_at.is_(None)
                )
            )
        )
        audit = Counter(
            (r.signal_id, r.field, json.dumps(_norm(r.new_value), sort_keys=True), r.tier)
            for r in conn.execute(sa.select(sync_audit_log))
        )
        log = Counter(
            (r.signal_id, r.event_type, r.idempotency_key)
            for r in conn.execute(
                sa.select(
                    signal_events.c.signal_id,
                    signal_events.c.event_type,
                    signal_events.c.idempotency_key,
                )
            )
        )
    engine.dispose()
    return {"registry": registry, "gaps": gaps, "audit": audit, "log": log}


def audit_mismatches(url: str) -> list[str]:
    """Registry vs audit trail: for every (signal, field) the *latest* audit row's new value
    and tier are what the registry holds (nothing audited that did not land), and every
    field the sync filled (a provenance entry with a tier) has an audit row (nothing landed
    unaudited). Empty = consistent."""
    engine = sa.create_engine(url)
    problems: list[str] = []
    with engine.connect() as conn:
        rows = {r["signal_id"]: r for r in conn.execute(sa.select(signals)).mappings()}
        latest: dict[tuple[str, str], Any] = {}
        for r in conn.execute(sa.select(sync_audit_log).order_by(sync_audit_log.c.audit_id)):
            latest[(r.signal_id, r.field)] = r
    engine.dispose()
    for (signal_id, field), audit in latest.items():
        row = rows.get(signal_id)
        if row is None:
            problems.append(f"audit for unknown signal {signal_id}")
            continue
        if field not in row:
            continue  # an audited non-column decision (e.g. status transitions)
        held = _norm(row[field])
        if held != _norm(audit.new_value):
            problems.append(f"{signal_id}.{field}: registry {held!r} != audit {audit.new_value!r}")
        tier = ((row["field_provenance"] or {}).get(field) or {}).get("tier")
        if str(tier) in SYNC_TIERS and str(tier) != str(audit.tier):
            problems.append(f"{signal_id}.{field}: provenance tier {tier} != audit {audit.tier}")
    for signal_id, row in rows.items():
        for field, info in (row["field_provenance"] or {}).items():
            # tier "event" = projected from the log (the log is the record); tiers 0-3 are
            # the sync's fills, each of which must be audited
            if isinstance(info, dict) and str(info.get("tier")) in SYNC_TIERS:
                if (signal_id, field) not in latest:
                    problems.append(f"{signal_id}.{field}: filled (tier {info['tier']}) unaudited")
    return problems


# --- services -------------------------------------------------------------------------------


class PrivateRedis:
    """A throwaway ``redis-server`` on a free loopback port (never the shared one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _pg_cluster() -> list[str]:
    version = sorted(p.name for p in __import__("pathlib").Path("/etc/postgresql").iterdir())[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def pg_ready(timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False, timeout=10
        )
        if done.returncode == 0:
            return True
        time.sleep(0.2)
    return False


def restart_postgres() -> float:
    """``pg_ctlcluster … restart`` (fast shutdown: every connection is cut), then wait for
    ``pg_isready``; if the restart fails, start the cluster. Returns the seconds it took."""
    started = time.monotonic()
    try:
        subprocess.run([*_pg_cluster(), "restart"], check=True, timeout=120, capture_output=True)
    finally:
        if not pg_ready(5):
            subprocess.run([*_pg_cluster(), "start"], check=False, timeout=120)
        assert pg_ready(60), "PostgreSQL did not come back after the drill"
    return time.monotonic() - started
