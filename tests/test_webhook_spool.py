"""Storage down ⇒ 503 and the event is spooled; replayed in order, idempotently, when the
database is back (on startup, at the next request, and by the background loop)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alphapulse_dagster.api import ApiSettings, create_app
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.sync.events import NewEvent
from alphapulse_dagster.webhooks.spool import Spool
from tests.webhook_helpers import SECRET, body, created, entry, events

CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/alphapulse_nowhere"

pytestmark = pytest.mark.postgres


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _post(client: TestClient, payload: dict[str, object]):  # type: ignore[no-untyped-def]
    return client.post("/webhooks/tradingview", content=body(payload))


def test_stopped_database_spools_and_restart_replays(pg_url: str, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.jsonl"
    payloads = [
        entry(),
        created(),
        entry(
            trade_id="20190614_150000_BEARISH",
            direction="SHORT",
            stop_loss=8450.0,
            targets=[8270.0],
        ),
    ]
    down = create_app(
        ApiSettings(database_url=CLOSED_PORT_URL, webhook_secret=SECRET, spool_path=spool_path)
    )
    with TestClient(down) as client:
        answers = [_post(client, payload) for payload in payloads]
        assert [a.status_code for a in answers] == [503, 503, 503]
        assert answers[0].json()["status"] == "spooled"
        # a bad payload is still a clean 4xx while the database is down (reject row logged)
        assert _post(client, created(event="NOPE")).status_code == 422
        health = client.get("/healthz").json()
        assert health["database"] == "unavailable" and health["spool_pending_bytes"] > 0
        # reads answer 503, not 500
        assert client.get("/signals").status_code == 503
    assert Spool(spool_path).pending_events() == 3

    up = create_app(ApiSettings(database_url=pg_url, webhook_secret=SECRET, spool_path=spool_path))
    with TestClient(up) as client:  # startup replays the spool, in the background
        wait_until(lambda: Spool(spool_path).pending() == 0)
        # resending what was spooled is a duplicate: nothing twice
        assert _post(client, payloads[0]).json()["status"] == "duplicate"
    engine = make_engine(pg_url)
    rows = events(engine)
    engine.dispose()
    assert [r["event_type"] for r in rows] == ["ENTRY", "SIGNAL_CREATED", "ENTRY"]  # spool order
    assert len({r["idempotency_key"] for r in rows}) == 3


def _set_connections(admin_url: str, database: str, allowed: bool) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
    admin.dispose()


def test_database_lost_and_back_while_serving(pg_url: str, tmp_path: Path) -> None:
    from tests.conftest import PG_ADMIN_URL

    database = sa.engine.make_url(pg_url).database
    assert database
    app = create_app(
        ApiSettings(database_url=pg_url, webhook_secret=SECRET, spool_path=tmp_path / "s.jsonl")
    )
    with TestClient(app) as client:
        first = _post(client, created()).json()
        assert first["status"] == "accepted"
        _set_connections(PG_ADMIN_URL, database, allowed=False)
        try:
            lost = [_post(client, entry()), _post(client, entry(event="MFE_UPDATE", mfe=0.5))]
            assert [r.status_code for r in lost] == [503, 503]
        finally:
            _set_connections(PG_ADMIN_URL, database, allowed=True)
        time.sleep(1.1)  # past the replay back-off: the next request replays first
        after = _post(client, entry(event="EXIT", exit_price=8450, exit_reason="target")).json()
        assert after["status"] == "accepted"
    engine = make_engine(pg_url)
    rows = events(engine)
    engine.dispose()
    assert [r["event_type"] for r in rows] == ["SIGNAL_CREATED", "ENTRY", "MFE_UPDATE", "EXIT"]
    assert rows[-1]["event_id"] == after["event_id"]


def test_spool_replay_is_idempotent_and_keeps_order(pg_url: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    now = utcnow()
    spooled = [
        NewEvent(
            source="tradingview",
            event_type="MFE_UPDATE",
            signal_id="BTCUSD:t",
            trade_id="t",
            symbol="BTCUSD",
            event_time=now,
            received_at=now,
            payload={"n": n},
            idempotency_key=f"k{n}",
        )
        for n in range(5)
    ]
    spool.append(spooled[:3])
    spool.append(spooled[3:])
    with open(spool.path, "a", encoding="utf-8") as handle:
        handle.write('{"torn": ')  # a write cut by a crash (never acknowledged)
    engine = make_engine(pg_url)
    assert spool.replay(engine, now) == 5
    spool.append(spooled[1:2])  # replaying an already-committed event again
    assert spool.replay(engine, now) == 1
    rows = events(engine)
    engine.dispose()
    assert [r["payload"]["n"] for r in rows] == [0, 1, 2, 3, 4]
    assert spool.pending() == 0
