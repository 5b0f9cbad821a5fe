"""Outages and abuse on the real server and the real Postgres (SPEC §14, issue 13): a torn
spool record costs only itself, a failed spool write leaves nothing behind, a locked
database is a spooled 503 within 2 s, startup answers before the replay, refusals get
rationed reject rows, and a rationed source is turned away before its body is read."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from alphapulse_dagster.api.settings import ApiSettings
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.sync.events import NewEvent
from alphapulse_dagster.webhooks.ingest import webhook_event
from alphapulse_dagster.webhooks.reject_budget import RejectBudget, RejectLimits
from alphapulse_dagster.webhooks.spool import Spool
from alphapulse_dagster.webhooks.spool_record import decode_record, encode_record
from tests.live_server import REPO_ROOT, LiveServer
from tests.test_webhook_spool import CLOSED_PORT_URL, wait_until
from tests.webhook_helpers import SECRET, body, created, events, rejects

pytestmark = pytest.mark.postgres


def _env(database_url: str, spool: Path, **extra: str) -> dict[str, str]:
    return {
        "ALPHAPULSE_DATABASE_URL": database_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(spool),
        **extra,
    }


def _signal(n: int) -> dict[str, Any]:
    return created(trade_id=f"20190614_{n:06d}_BULLISH", alert_id=f"outage-{n}")


def _event(n: int) -> NewEvent:
    return webhook_event(_signal(n))


def _post(url: str, payload: dict[str, Any], timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{url}/webhooks/tradingview", content=body(payload), timeout=timeout)


def _logged_trade_ids(pg_url: str) -> list[str]:
    engine = make_engine(pg_url)
    try:
        return [row["trade_id"] for row in events(engine)]
    finally:
        engine.dispose()


# --- 1. a torn or unreadable record costs only itself -----------------------------------


def test_a_torn_record_costs_only_itself_and_is_kept_as_a_dead_letter(
    pg_url: str, tmp_path: Path
) -> None:
    """A spool holding a good record, a record with a flipped byte, and half a record (a
    write cut by a crash); the server, database down, spools one more event after it. On
    restart every good record is stored in spool order; the two bad ones are in the
    dead-letter file, counted in /healthz, GET /health and ``alphapulse health``."""
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([_event(1)])
    flipped = encode_record(_event(2)).replace(b"BTCUSD", b"BTCUSX", 1)
    torn = encode_record(_event(3))[:80]
    with open(spool.path, "ab") as handle:
        handle.write(flipped + torn)  # no newline after the torn record

    down = LiveServer(_env(CLOSED_PORT_URL, spool.path), tmp_path / "down.log").start()
    try:
        answer = _post(down.url, _signal(4))
    finally:
        down.stop()
    assert answer.status_code == 503 and answer.json()["status"] == "spooled"
    # the new record starts on a line of its own, after the torn one
    content = spool.path.read_bytes()
    assert content.startswith(encode_record(_event(1)) + flipped + torn + b"\n")
    last = content[len(encode_record(_event(1)) + flipped + torn + b"\n") :]
    assert decode_record(last.rstrip(b"\n")).trade_id == "20190614_000004_BULLISH"

    up = LiveServer(_env(pg_url, spool.path), tmp_path / "up.log").start()
    try:
        wait_until(lambda: spool.pending() == 0)
        health = httpx.get(f"{up.url}/healthz", timeout=5).json()
        report = httpx.get(f"{up.url}/health", timeout=5).json()
    finally:
        up.stop()
    assert _logged_trade_ids(pg_url) == ["20190614_000001_BULLISH", "20190614_000004_BULLISH"]
    assert health["spool_dead_letters"] == 2
    assert report["webhook_spool"]["dead_letters"] == 2
    dead = spool.dead_letter_path.read_text(encoding="utf-8")
    assert "checksum mismatch" in dead and torn.decode() in dead.replace("\\", "")

    cli = subprocess.run(
        [sys.executable, "-m", "alphapulse_dagster.cli", "health"],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ALPHAPULSE_DATABASE_URL": pg_url,
            "ALPHAPULSE_SPOOL_PATH": str(spool.path),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "2 dead letters" in cli.stdout


def test_a_failed_spool_write_says_unavailable_and_leaves_nothing_behind(
    pg_url: str, tmp_path: Path
) -> None:
    """The server may not grow any file past 24 KB (RLIMIT_FSIZE: a full disk for it), the
    database is down: events are spooled until one append no longer fits — that one is a
    503 without the word "spooled", and the spool is cut back to whole records. A server
    restarted without the limit spools the next event; once the database is back every
    event answered "spooled" is in the log exactly once."""
    spool = Spool(tmp_path / "spool.jsonl")
    limited = LiveServer(
        _env(CLOSED_PORT_URL, spool.path), tmp_path / "limited.log", file_size_limit=24_000
    ).start()
    spooled: list[int] = []
    failed: httpx.Response | None = None
    try:
        for n in range(200):
            answer = _post(limited.url, _signal(n))
            assert answer.status_code == 503, answer.text
            if answer.json()["status"] != "spooled":
                failed = answer
                break
            spooled.append(n)
    finally:
        limited.stop()
    assert failed is not None and len(spooled) >= 10
    assert "spooled" not in failed.text
    content = spool.path.read_bytes()
    assert content.endswith(b"\n") and len(content.splitlines()) == len(spooled)

    down = LiveServer(_env(CLOSED_PORT_URL, spool.path), tmp_path / "down.log").start()
    try:
        late = _post(down.url, _signal(500))
    finally:
        down.stop()
    assert late.json()["status"] == "spooled"
    spooled.append(500)

    up = LiveServer(_env(pg_url, spool.path), tmp_path / "up.log").start()
    try:
        wait_until(lambda: spool.pending() == 0)
    finally:
        up.stop()
    assert _logged_trade_ids(pg_url) == [f"20190614_{n:06d}_BULLISH" for n in spooled]
    assert spool.dead_letters() == 0


# --- 2. a locked database is an outage, not a wait ---------------------------------------


@pytest.mark.parametrize(
    "timeouts",
    [
        {},  # lock_timeout fires
        # lock and statement timeouts out of reach: the client-side deadline answers, as
        # for a hung server that never replies
        {"ALPHAPULSE_DB_LOCK_TIMEOUT_MS": "60000", "ALPHAPULSE_DB_STATEMENT_TIMEOUT_MS": "60000"},
    ],
    ids=["lock-timeout", "write-deadline"],
)
def test_a_locked_table_is_a_spooled_503_within_2_s(
    pg_url: str, tmp_path: Path, timeouts: dict[str, str]
) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    server = LiveServer(_env(pg_url, spool.path, **timeouts), tmp_path / "server.log").start()
    locker = sa.create_engine(pg_url)
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:
        with locker.begin() as connection:
            connection.exec_driver_sql("LOCK TABLE signal_events IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(20)

    holder = threading.Thread(target=hold_lock)
    try:
        assert _post(server.url, _signal(1)).json()["status"] == "accepted"
        holder.start()
        assert locked.wait(10)
        started = time.monotonic()
        answer = _post(server.url, _signal(2), timeout=30)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503 and answer.json()["status"] == "spooled"
        assert elapsed <= 2.0, f"answered after {elapsed:.2f} s"
        release.set()
        holder.join(10)
        wait_until(lambda: spool.pending() == 0)
        resent = _post(server.url, _signal(2)).json()
    finally:
        release.set()
        server.stop()
        locker.dispose()
    assert resent["status"] == "duplicate"
    assert _logged_trade_ids(pg_url) == ["20190614_000001_BULLISH", "20190614_000002_BULLISH"]


# --- 3. replay: incremental, in the background, in arrival order -------------------------


def test_replay_steps_are_incremental_and_idempotent(pg_url: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([_event(n) for n in range(1200)])
    engine = make_engine(pg_url)
    try:
        first = spool.replay_step(engine, max_records=500)
        assert len(first.appended) == 500 and not first.drained
        assert spool.pending_events() == 700
        lines = spool.path.read_bytes().splitlines(keepends=True)
        assert int(spool.offset_path.read_text()) == sum(len(line) for line in lines[:500])
        # a crash after the commit, before the offset moved: the step runs again
        spool.offset_path.write_text("0")
        again = spool.replay_step(engine, max_records=500)
        assert [a.duplicate for a in again.appended] == [True] * 500
        assert spool.replay(engine) == 700
        assert spool.pending() == 0 and spool.path.stat().st_size == 0
        assert len(events(engine)) == 1200
    finally:
        engine.dispose()


def test_startup_answers_first_then_replays_in_arrival_order(pg_url: str, tmp_path: Path) -> None:
    """20,000 spooled events (~12 MB): /healthz answers while the replay is under way, an
    event arriving meanwhile is spooled behind the backlog, and the log ends up in arrival
    order."""
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([_event(n) for n in range(20_000)])
    assert spool.pending() > 10_000_000
    server = LiveServer(_env(pg_url, spool.path), tmp_path / "server.log").start()
    try:
        first = httpx.get(f"{server.url}/healthz", timeout=5).json()
        late = _post(server.url, _signal(20_000))
        wait_until(lambda: spool.pending() == 0, seconds=60)
        after = _post(server.url, _signal(20_001)).json()
    finally:
        server.stop()
    assert first["spool_pending_bytes"] > 0  # answered before the replay was over
    assert late.status_code == 503 and late.json()["status"] == "spooled"
    assert after["status"] == "accepted"
    engine = make_engine(pg_url)
    rows = events(engine)
    engine.dispose()
    assert [row["trade_id"] for row in rows] == [f"20190614_{n:06d}_BULLISH" for n in range(20_002)]


# --- 4. refusals: rationed rows, counted drops, a rationed source turned away unread -----

FLOODER, NEIGHBOUR, TRADINGVIEW = "203.0.113.7", "198.51.100.20", "52.89.214.238"


def _head(content_length: int, source: str) -> bytes:
    return (
        "POST /webhooks/tradingview HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
        f"X-Forwarded-For: {source}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


def _answer_to_head_only(port: int, source: str) -> tuple[bytes, float]:
    """Send a request head announcing a 4,000-byte body, never send the body, and read
    the whole answer (its head and its Content-Length of body): what came back and how
    long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_head(4000, source))
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        while len(rest) < length:
            rest += sock.recv(4096)
        answered = time.monotonic() - started
        assert sock.recv(4096) == b""  # the body never came: closed at the keep-alive timeout
        return head + b"\r\n\r\n" + rest, answered


def test_a_rationed_source_is_turned_away_unread_and_others_still_land(
    pg_url: str, tmp_path: Path
) -> None:
    """Sources told apart by ``X-Forwarded-For`` from a trusted proxy (127.0.0.1). A
    flooding source gets 401 and a reject row for its first 5 refusals (the burst), then
    429 from its request head, after the gate's 0.25 s back-pressure delay: a request whose
    body never comes is answered then (before the fix: held until the 30 s body deadline,
    then 408).
    A neighbour's valid event lands; TradingView's address, refused as often, is never
    turned away."""
    env = _env(
        pg_url,
        tmp_path / "spool.jsonl",
        ALPHAPULSE_REJECTS_BURST="5",
        ALPHAPULSE_REJECTS_PER_SOURCE_PER_MINUTE="0.001",
        ALPHAPULSE_REJECTS_PER_MINUTE="100000",  # the total refills at once: not in the way
        ALPHAPULSE_TRUSTED_PROXIES="127.0.0.1",
        ALPHAPULSE_BODY_TIMEOUT_SECONDS="30",
        ALPHAPULSE_KEEP_ALIVE_SECONDS="1",
    )
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:

            def post(payload: dict[str, Any], source: str) -> httpx.Response:
                headers = {"X-Forwarded-For": source}
                return client.post("/webhooks/tradingview", content=body(payload), headers=headers)

            flood = [post(_signal(n) | {"secret": "x"}, FLOODER) for n in range(20)]
            unread, seconds = _answer_to_head_only(server.port, FLOODER)
            dropped = client.get("/healthz").json()["rejects_dropped"]
            neighbour = post(_signal(1000), NEIGHBOUR)
            tradingview = [post(_signal(n) | {"secret": "x"}, TRADINGVIEW) for n in range(8)]
            tradingview_valid = post(_signal(1001), TRADINGVIEW)
        engine = make_engine(pg_url)
        wait_until(lambda: len(rejects(engine)) >= 10)
        time.sleep(0.5)  # one more flush interval: nothing else arrives
        rows = rejects(engine)
        stored = [row["trade_id"] for row in events(engine)]
        engine.dispose()
    finally:
        server.stop()
    assert [r.status_code for r in flood] == [401] * 5 + [429] * 15
    assert flood[-1].json()["detail"].startswith("too many refused requests")
    assert flood[-1].headers["retry-after"] == "60000"  # 60 / 0.001 s: a row's worth
    assert unread.startswith(b"HTTP/1.1 429 ") and 0.25 <= seconds < 2.0  # the delay, no more
    assert dropped == 16  # 15 turned away + the one whose body never came
    assert neighbour.json()["status"] == "accepted"
    assert [r.status_code for r in tradingview] == [401] * 8
    assert tradingview_valid.json()["status"] == "accepted"
    assert stored == [_signal(1000)["trade_id"], _signal(1001)["trade_id"]]
    flooder_rows = [row for row in rows if row["source_address"] == FLOODER]
    assert len(flooder_rows) == 5 and {row["status_code"] for row in flooder_rows} == {401}
    assert [row["source_address"] for row in rows].count(TRADINGVIEW) == 5
    assert len(rows) == 10


def test_only_a_source_that_spent_its_own_rows_is_turned_away() -> None:
    now = [0.0]
    budget = RejectBudget(
        RejectLimits(per_source_per_minute=60, burst=2, total_per_minute=60, max_rows=10),
        clock=lambda: now[0],
    )
    assert budget.turn_away("a") is False  # never refused: read and judged
    assert [budget.allow("a") for _ in range(3)] == [True, True, False]
    assert budget.turn_away("a") is True
    assert budget.allow("b") is False  # the total is spent: b's refusal gets no row ...
    assert budget.turn_away("b") is False  # ... but only b's own bucket can turn b away
    now[0] = 1.0  # a row's worth refilled for a
    assert budget.turn_away("a") is False
    assert budget.dropped == 3  # a's third refusal, a turned away once, b's refusal
    with budget.reading("a"):  # that one request of a is being read: it holds the row ...
        assert budget.turn_away("a") is True  # ... so a's other connections wait
        with budget.reading("c"):  # a source never refused reserves nothing
            assert budget.turn_away("c") is False
    assert budget.turn_away("a") is False  # answered without a refusal: the row is back
    assert budget.allow("a") is True and budget.turn_away("a") is True  # refused: spent
    assert budget.dropped == 5


def test_reject_budget_per_source_total_and_table_cap() -> None:
    now = [0.0]
    budget = RejectBudget(
        RejectLimits(per_source_per_minute=60, burst=3, total_per_minute=120, max_rows=10),
        clock=lambda: now[0],
    )
    assert [budget.allow("a") for _ in range(4)] == [True, True, True, False]
    assert budget.allow("b") is False  # the total's burst (3) is spent too
    now[0] = 1.0  # +1 per source, +2 in total
    assert [budget.allow("a"), budget.allow("a"), budget.allow("b")] == [True, False, True]
    budget.stored = 5  # the table already held 5 rows: 5 + 5 granted = the cap
    now[0] = 100.0
    assert [budget.allow(f"s{n}") for n in range(3)] == [False, False, False]
    assert budget.granted == 5 and budget.dropped == 6


def test_bad_outage_settings_name_the_variable() -> None:
    base = {"ALPHAPULSE_DATABASE_URL": "sqlite:///x.db"}
    with pytest.raises(ValueError, match="ALPHAPULSE_DB_LOCK_TIMEOUT_MS"):
        ApiSettings.from_env({**base, "ALPHAPULSE_DB_LOCK_TIMEOUT_MS": "soon"})
    with pytest.raises(ValueError, match="ALPHAPULSE_WEBHOOK_WRITE_TIMEOUT"):
        ApiSettings.from_env({**base, "ALPHAPULSE_WEBHOOK_WRITE_TIMEOUT": "0"})
    settings = ApiSettings.from_env({**base, "ALPHAPULSE_REJECTS_MAX_ROWS": "7"})
    assert settings.reject_limits.max_rows == 7 and settings.write_timeouts.lock_ms == 500


def test_spool_records_round_trip_and_refuse_a_wrong_frame() -> None:
    event = _event(7)
    line = encode_record(event)
    assert decode_record(line.rstrip(b"\n")) == event
    with pytest.raises(ValueError, match="length"):
        decode_record(line.rstrip(b"\n")[:-1])
