"""A real ``alphapulse serve`` (uvicorn) on loopback, backed by the real Postgres:
a burst of posts, ``kill -9`` in the middle, restart — every 200 is in the log exactly once;
the same with the database taken away mid-burst (503s spooled, the server killed while the
spool holds them, replayed on restart); hostile input on the real server (4xx + a reject
row each, the server stays up); and a bounded schemathesis run against the served OpenAPI
(no 5xx)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.db.tables import signal_events
from alphapulse_dagster.webhooks.spool import Spool
from tests.conftest import _drop_pg_database, _new_pg_database, _pg_url
from tests.live_server import LiveServer
from tests.test_webhook_spool import _set_connections, wait_until
from tests.webhook_helpers import SECRET, body, created, entry

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BURST = 3000
CONCURRENCY = 32


# alert_id -> the idempotency key the server gives that payload (the hash of the canonical
# payload, alert_id part of it)
_key: dict[str, str] = {}


def _remember_keys(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from alphapulse_dagster.webhooks.ingest import webhook_event

    for payload in payloads:
        _key[payload["alert_id"]] = webhook_event(payload).idempotency_key
    return payloads


async def _burst(url: str, payloads: list[dict[str, Any]], kill_after: int, kill) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Post everything with CONCURRENCY workers; call ``kill`` once ``kill_after`` 200s came
    back. Returns alert_id -> answer for every 200."""
    answers: dict[str, Any] = {}
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    killed = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            payload = queue.get_nowait()
            try:
                response = await client.post("/webhooks/tradingview", content=body(payload))
            except httpx.HTTPError:
                if killed.is_set():
                    return  # the server is gone: the burst is over
                continue
            if response.status_code == 200:
                answers[payload["alert_id"]] = response.json()
                if len(answers) >= kill_after and not killed.is_set():
                    killed.set()
                    kill()

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=5.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return answers


def test_kill_9_during_a_burst_loses_no_acknowledged_event(pg_url: str, tmp_path: Path) -> None:
    env = {
        "ALPHAPULSE_DATABASE_URL": pg_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(tmp_path / "spool.jsonl"),
    }
    server = LiveServer(env, tmp_path / "server.log").start()
    payloads = _remember_keys(
        [created(trade_id=f"20190614_{n:06d}_BULLISH", alert_id=f"burst-{n}") for n in range(BURST)]
    )
    try:
        acknowledged = asyncio.run(_burst(server.url, payloads, BURST // 4, server.kill9))
    finally:
        server.stop()
    assert BURST // 4 <= len(acknowledged) < BURST, "the kill must land mid-burst"

    engine = make_engine(pg_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(signal_events.c.idempotency_key, signal_events.c.event_id)
        ).all()
    logged = {key: event_id for key, event_id in rows}
    assert len(logged) == len(rows)  # unique keys
    for alert_id, answer in acknowledged.items():
        assert logged.get(_key[alert_id]) == answer["event_id"], alert_id

    # restart and resend everything: acknowledged ones are duplicates, nothing twice
    server = LiveServer(env, tmp_path / "server2.log", port=server.port).start()
    try:
        resent = asyncio.run(_burst(server.url, payloads[: BURST // 2], BURST, lambda: None))
    finally:
        server.stop()
    resent_acknowledged = [
        p["alert_id"] for p in payloads[: BURST // 2] if p["alert_id"] in acknowledged
    ]
    assert len(resent) == BURST // 2  # nothing failed after the restart
    for alert_id in resent_acknowledged:
        assert resent[alert_id] == {
            "status": "duplicate",
            "event_id": acknowledged[alert_id]["event_id"],
        }
    with engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(signal_events)).scalar()
        distinct = connection.execute(
            sa.select(sa.func.count(sa.distinct(signal_events.c.idempotency_key)))
        ).scalar()
    engine.dispose()
    assert total == distinct >= BURST // 2


async def _burst_with_outage(
    url: str, payloads: list[dict[str, Any]], outage_after: int, kill_after: int, outage, kill
) -> tuple[dict[str, Any], set[str]]:  # type: ignore[no-untyped-def]
    """Post everything; after ``outage_after`` 200s call ``outage`` (the database goes
    away), after ``kill_after`` 503s call ``kill``. Returns (alert_id -> answer for every
    200, alert_ids answered 503 "spooled")."""
    answers: dict[str, Any] = {}
    spooled: set[str] = set()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    down, killed = asyncio.Event(), asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty() and not killed.is_set():
            payload = queue.get_nowait()
            try:
                response = await client.post("/webhooks/tradingview", content=body(payload))
            except httpx.HTTPError:
                if killed.is_set():
                    return
                continue
            if response.status_code == 200:
                answers[payload["alert_id"]] = response.json()
                if len(answers) >= outage_after and not down.is_set():
                    down.set()
                    outage()
            elif response.status_code == 503:
                assert response.json()["status"] == "spooled", response.text
                spooled.add(payload["alert_id"])
                if len(spooled) >= kill_after and not killed.is_set():
                    killed.set()
                    kill()
            else:
                raise AssertionError(f"{response.status_code} {response.text}")

    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return answers, spooled


def test_database_outage_then_kill_9_spools_and_replays_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    """Mid-burst the database refuses connections (503 + spool), then the server is killed
    with ``kill -9`` while the spool holds those events; the database comes back and the
    restarted server replays the spool. Every 200 and every spooled 503 is in the log
    exactly once, with the event id the 200 named; resending everything adds nothing."""
    from tests.conftest import PG_ADMIN_URL

    database = sa.engine.make_url(pg_url).database
    assert database
    spool_path = tmp_path / "spool.jsonl"
    env = {
        "ALPHAPULSE_DATABASE_URL": pg_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(spool_path),
    }
    total = 1200
    payloads = _remember_keys(
        [
            created(trade_id=f"20190614_{n:06d}_BULLISH", alert_id=f"outage-{n}")
            for n in range(total)
        ]
    )
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        acknowledged, spooled = asyncio.run(
            _burst_with_outage(
                server.url,
                payloads,
                outage_after=300,
                kill_after=100,
                outage=lambda: _set_connections(PG_ADMIN_URL, database, allowed=False),
                kill=server.kill9,
            )
        )
    finally:
        server.stop()
        _set_connections(PG_ADMIN_URL, database, allowed=True)
    assert len(acknowledged) >= 300 and len(spooled) >= 100
    assert not acknowledged.keys() & spooled
    assert spool_path.stat().st_size > 0  # the spooled events survived the kill on disk

    server = LiveServer(env, tmp_path / "server2.log", port=server.port).start()
    try:
        wait_until(lambda: Spool(spool_path).pending() == 0)  # replayed in the background
        engine = make_engine(pg_url)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(signal_events.c.idempotency_key, signal_events.c.event_id)
            ).all()
        logged = dict(rows)
        assert len(logged) == len(rows)  # nothing twice
        for alert_id, answer in acknowledged.items():
            assert logged.get(_key[alert_id]) == answer["event_id"], alert_id
        missing = [a for a in spooled if _key[a] not in logged]
        assert not missing, f"{len(missing)} spooled events not replayed, e.g. {missing[:3]}"

        # the sender retries everything: the known ones are duplicates, the rest accepted
        resent = asyncio.run(_burst(server.url, payloads, total + 1, lambda: None))
        assert len(resent) == total
        for alert_id in acknowledged.keys() | spooled:
            assert resent[alert_id]["status"] == "duplicate", alert_id
        with engine.connect() as connection:
            count = connection.execute(sa.select(sa.func.count()).select_from(signal_events))
            assert count.scalar() == total
        engine.dispose()
    finally:
        server.stop()


def _nested(depth: int) -> bytes:
    """A valid SIGNAL_CREATED with an ``extra`` key nested ``depth`` objects deep (built
    as text: encoders refuse such depth)."""
    head = body(created(alert_id=f"nested-{depth}"))[:-1]
    return head + b', "extra": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


HOSTILE: list[tuple[str, bytes | dict[str, Any], dict[str, str], set[int]]] = [
    ("wrong secret", created(secret="guess"), {}, {401}),
    ("secret as object", created(secret={"$ne": ""}), {}, {401}),
    (
        "form-encoded",
        b"secret=x&event=ENTRY",
        {"Content-Type": "application/x-www-form-urlencoded"},
        {422},
    ),
    ("event as list", created(event=["SIGNAL_CREATED"]), {}, {422}),
    ("symbol as object", created(symbol={"$gt": ""}), {}, {422}),
    ("time as bool", created(time=True), {}, {422}),
    ("htf_alignment as string", created(htf_alignment="BULLISH"), {}, {422}),
    ("entry_price overflow", entry(entry_price=1e308 * 10), {}, {422}),
    (
        "NaN literal",
        b'{"event":"ENTRY","secret":"' + SECRET.encode() + b'","entry_price":NaN}',
        {},
        {422},
    ),
    ("symbol longer than its column", created(symbol="A" * 5000), {}, {422}),
    ("trade_id longer than its column", created(trade_id="T" * 5000), {}, {422}),
    ("nested object 5000 deep", _nested(5000), {}, {413, 422}),
    ("nested object 200 deep", _nested(200), {}, {200, 422}),
    ("sql in symbol", created(symbol="BTC'; DROP TABLE signals;--"), {}, {200, 422}),
    ("unicode symbol", created(symbol="БИТ🚀"), {}, {200, 422}),
    ("right-to-left override", created(trade_id="20190614_120000_\u202eLONG"), {}, {200, 422}),
]


def _hostile_body(payload: bytes | dict[str, Any]) -> bytes:
    if isinstance(payload, bytes):
        return payload
    import json

    return json.dumps(payload, allow_nan=True).encode()


def test_hostile_input_on_the_real_server(pg_url: str, tmp_path: Path) -> None:
    """Each hostile request gets its 4xx (or is stored as plain data), a refusal writes one
    reject row, nothing answers 5xx, and the server is still up and accepting afterwards —
    including a chunked body over the limit (no Content-Length) and SQL in read queries."""
    from tests.webhook_helpers import events, rejects

    env = {
        "ALPHAPULSE_DATABASE_URL": pg_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(tmp_path / "spool.jsonl"),
    }
    server = LiveServer(env, tmp_path / "server.log").start()
    refused = accepted = 0
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for name, payload, headers, expected in HOSTILE:
                response = client.post(
                    "/webhooks/tradingview", content=_hostile_body(payload), headers=headers
                )
                assert response.status_code in expected, (
                    name,
                    response.status_code,
                    response.text[:300],
                )
                if response.status_code == 200:
                    accepted += 1
                else:
                    refused += 1
                    assert "detail" in response.json(), name

            def chunks():  # type: ignore[no-untyped-def]
                for _ in range(100):
                    yield b" " * 1024  # 100 KiB, streamed without a Content-Length

            response = client.post(
                "/webhooks/tradingview", content=chunks(), headers={"Content-Type": "text/plain"}
            )
            assert response.status_code == 413
            refused += 1

            for query in ("' OR '1'='1", "1; DROP TABLE signals", "БИТ🚀"):
                listing = client.get("/signals", params={"symbol": query})
                assert listing.status_code == 200 and listing.json()["items"] == []
            assert client.get("/signals/x%27%3B%20DROP%20TABLE%20signals%3B--").status_code == 404
            assert client.get("/signals", params={"limit": "1e9"}).status_code == 422
            assert client.get("/signals", params={"cursor": "'; --"}).status_code == 422

            assert server.process is not None and server.process.poll() is None
            assert client.get("/healthz").status_code == 200
            ok = client.post("/webhooks/tradingview", content=body(created(alert_id="after")))
            assert ok.json()["status"] == "accepted"
        engine = make_engine(pg_url)
        wait_until(lambda: len(rejects(engine)) >= refused)  # written in batches
        assert len(rejects(engine)) == refused
        assert len(events(engine)) == accepted + 1
        engine.dispose()
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and " 500 " not in log
    assert SECRET not in log


@pytest.fixture(scope="module")
def served_schema_url(
    pg_admin_engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    name = _new_pg_database(pg_admin_engine)
    url = _pg_url(name)
    upgrade(url)
    tmp = tmp_path_factory.mktemp("schemathesis")
    env = {"ALPHAPULSE_DATABASE_URL": url, "ALPHAPULSE_SPOOL_PATH": str(tmp / "spool.jsonl")}
    server = LiveServer(env, tmp / "server.log").start()
    try:
        yield server.url
    finally:
        server.stop()
        _drop_pg_database(pg_admin_engine, name)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_served_openapi_never_answers_5xx(served_schema_url: str, mode: str) -> None:
    """Every operation of the served OpenAPI, positive and negative examples (bounded:
    a few seconds), must never answer 5xx (503 from /metrics/mtf when the MTF module is
    absent is the documented degraded answer)."""
    from schemathesis import GenerationMode

    loaded = schemathesis.openapi.from_url(f"{served_schema_url}/openapi.json")
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert {op.path for op in operations} >= {"/webhooks/tradingview", "/signals", "/health"}
    failures: list[str] = []
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=GenerationMode(mode))

        @given(case=strategy)
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=served_schema_url, timeout=10)
            degraded = case.path == "/metrics/mtf" and response.status_code == 503
            if response.status_code >= 500 and not degraded:
                failures.append(
                    f"{case.method} {case.path} {case.body!r:.200} -> "
                    f"{response.status_code} {response.text[:200]}"
                )

        try:
            check()
        except Unsatisfiable:
            # e.g. /healthz has no parameter that could be made invalid
            assert mode == "negative", operation.path
    assert not failures, "\n".join(failures[:10])


def test_replay_webhooks_cli_posts_the_sample_to_a_running_server(served_schema_url: str) -> None:
    from alphapulse_dagster.cli import main as cli_main

    sample = Path(__file__).resolve().parents[1] / "data" / "sample_webhooks.jsonl"
    assert cli_main(["replay-webhooks", str(sample), "--url", served_schema_url]) == 0
    signal_id = "BTCUSD:20190614_090000_BULLISH"
    with httpx.Client(base_url=served_schema_url) as client:
        # the registry is the sync's; the log has the events, resent as duplicates
        again = client.post("/webhooks/tradingview", content=sample.read_bytes().splitlines()[0])
        assert again.json()["status"] == "duplicate"
        assert client.get(f"/signals/{signal_id}").status_code == 404  # not projected yet
