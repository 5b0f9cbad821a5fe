"""Issue 13 items 8 and 11 on a real ``alphapulse serve`` (uvicorn) with the real Postgres:
the allow-list cannot be spoofed with ``X-Forwarded-For`` from loopback, slow bodies get a
408 and lose their connection, idle keep-alive connections are closed, connections are
capped; ids with ``%`` are served."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from alphapulse_dagster.db.engine import make_engine
from tests.live_server import LiveServer
from tests.webhook_helpers import SECRET, body, created, rejects

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TV_IP = "52.89.214.238"


@pytest.fixture
def serve(pg_url: str, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        server = LiveServer(
            {
                "ALPHAPULSE_DATABASE_URL": pg_url,
                "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
                "ALPHAPULSE_SPOOL_PATH": str(tmp_path / f"spool{len(started)}.jsonl"),
                "FORWARDED_ALLOW_IPS": "*",  # uvicorn's own default must not matter
                **env,
            },
            tmp_path / f"server{len(started)}.log",
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def _rejects_when_written(pg_url: str, expected: int) -> list[dict]:  # type: ignore[type-arg]
    """The reject rows once ``expected`` of them are written (the server writes them in
    batches, off the request path)."""
    engine = make_engine(pg_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            rows = rejects(engine)
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        engine.dispose()


def _post(server: LiveServer, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return httpx.post(
        f"{server.url}/webhooks/tradingview", content=body(created()), headers=headers
    )


def test_forwarded_for_from_loopback_does_not_pass_the_allow_list(serve, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    server = serve(ALPHAPULSE_WEBHOOK_ALLOWED_IPS="tradingview")
    response = _post(server, forwarded_for=TV_IP)
    assert response.status_code == 403, response.text
    [reject] = _rejects_when_written(pg_url, 1)
    assert reject["source_address"] == "127.0.0.1"


def test_forwarded_for_counts_from_a_trusted_proxy(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(
        ALPHAPULSE_WEBHOOK_ALLOWED_IPS="tradingview", ALPHAPULSE_TRUSTED_PROXIES="127.0.0.0/8"
    )
    assert _post(server, forwarded_for=TV_IP).status_code == 200
    # the client's own claim left of the proxy's hop is not believed
    assert _post(server, forwarded_for=f"{TV_IP}, 10.1.2.3").status_code == 403
    assert _post(server).status_code == 403  # the proxy itself is not TradingView


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _send(sock: socket.socket, data: bytes) -> None:
    """Send unless the server has answered already (sending after its close would reset
    the connection and lose the answer)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        sock.sendall(data)


def _read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    received = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"connection still open; received {received!r}")


def test_a_slow_body_gets_408_and_its_connection_closed(serve, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    server = serve(ALPHAPULSE_BODY_TIMEOUT_SECONDS="1")
    payload = body(created())
    clients = [_connect(server) for _ in range(20)]
    started = time.monotonic()
    for sock in clients:
        sock.sendall(
            b"POST /webhooks/tradingview HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload[:5]
        )
    # a byte every 0.3 s, never the whole body
    answers: list[bytes] = [b""] * len(clients)
    for n in range(6):
        for sock in clients:
            _send(sock, payload[5 + n : 6 + n])
        time.sleep(0.3)
    for index, sock in enumerate(clients):
        answers[index] = _read_until_closed(sock, started + 8)
        sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[0]
    assert time.monotonic() - started < 8
    # the server still answers, and recorded each refusal
    assert _post(server).status_code == 200
    written = _rejects_when_written(pg_url, 20)
    assert [row["status_code"] for row in written] == [408] * 20


def test_idle_keep_alive_connections_are_closed(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ALPHAPULSE_KEEP_ALIVE_SECONDS="1")
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    answer = _read_until_closed(sock, started + 6)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 4


def test_connections_are_capped(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ALPHAPULSE_MAX_CONNECTIONS="5", ALPHAPULSE_BODY_TIMEOUT_SECONDS="30")
    held = []
    try:
        # four requests waiting for bodies that never come, each in the route before the
        # next connects: its "100 Continue" is sent when the route starts reading the body.
        # (Connecting all of them first raced: uvicorn checks the cap when a request's head
        # is read, so a slow server that accepted every connection before reading any head
        # refused the held requests themselves, and the sixth connection then fit.)
        for _ in range(4):
            sock = _connect(server)
            held.append(sock)
            sock.sendall(
                b"POST /webhooks/tradingview HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            sock.settimeout(10)
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        # four held requests and this one make five connections: refused
        assert httpx.get(f"{server.url}/healthz").status_code == 503
    finally:
        for sock in held:
            sock.close()
    assert _healthz_becomes(server, 200)  # and served again once they are gone


def _healthz_becomes(server, status: int, within: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/healthz").status_code == status:
            return True
        time.sleep(0.1)
    return False


def test_ids_with_percent_are_served_by_the_real_server(serve, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from alphapulse_dagster.sync.projection import project_log

    server = serve()
    sent = created(symbol="BINANCE:BTC%", trade_id="a:b!")
    assert httpx.post(f"{server.url}/webhooks/tradingview", content=body(sent)).status_code == 200
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            project_log(conn, datetime(2019, 6, 15, tzinfo=UTC))
    finally:
        engine.dispose()
    signal_id = "BINANCE%3ABTC%25:a%3Ab!"
    for path in (quote(signal_id, safe=""), quote(signal_id, safe=":!"), signal_id):
        answer = httpx.get(f"{server.url}/signals/{path}")
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["symbol"] == "BINANCE:BTC%"


def test_a_slow_request_head_gets_408_and_its_connection_closed(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ALPHAPULSE_BODY_TIMEOUT_SECONDS="1")
    trickling, silent = _connect(server), _connect(server)
    started = time.monotonic()
    head = b"POST /webhooks/tradingview HTTP/1.1\r\nHost: x\r\n"
    for n in range(6):  # a byte every 0.3 s, the head never complete
        _send(trickling, head[n : n + 1])
        time.sleep(0.3)
    for sock in (trickling, silent):  # the silent one never sent a byte
        assert _read_until_closed(sock, started + 8).startswith(b"HTTP/1.1 408")
        sock.close()
    assert time.monotonic() - started < 8
    # a keep-alive connection whose next request head trickles is closed as well
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b"}"):  # the whole first answer (headers, then the JSON body)
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    again = time.monotonic()
    for n in range(5):
        _send(sock, b"GET /healthz HTTP/1.1\r\n"[n : n + 1])
        time.sleep(0.3)
    assert _read_until_closed(sock, again + 8).startswith(b"HTTP/1.1 408")
    sock.close()
    assert _post(server).status_code == 200
