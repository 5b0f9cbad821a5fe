"""A real ``alphapulse serve`` (uvicorn) on loopback, backed by the real Postgres:
a burst of posts, ``kill -9`` in the middle, restart — every 200 is in the log exactly once;
and a bounded schemathesis run against the served OpenAPI (no 5xx)."""

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
from tests.conftest import _drop_pg_database, _new_pg_database, _pg_url
from tests.live_server import LiveServer
from tests.webhook_helpers import SECRET, body, created

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BURST = 3000
CONCURRENCY = 32


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
    payloads = [
        created(trade_id=f"20190614_{n:06d}_BULLISH", alert_id=f"burst-{n}") for n in range(BURST)
    ]
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
        assert logged.get(f"alert:{alert_id}") == answer["event_id"], alert_id

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
