"""Webhook ingest benchmark (SPEC §13): a real ``alphapulse serve`` on loopback, a second
process (``wrk``) posting unique SPEC §16 payloads at it, Postgres (or SQLite) behind it.

Measures, for ``POST /webhooks/noop`` (the same request path — read, parse, validate —
without storage) and then ``POST /webhooks/tradingview`` (group-committed to
``signal_events``): sustained responses/s, p50/p99 latency, errors, and afterwards counts
the rows so that every 200 is accounted for (zero lost). Prints a Markdown table.

    python bench/bench_webhooks.py                      # Postgres (fresh database)
    python bench/bench_webhooks.py --sqlite             # the embedded default
    python bench/bench_webhooks.py --duration 20 --connections 64

Postgres: ``ALPHAPULSE_BENCH_PG_ADMIN_URL`` (default the local server as ``postgres``) is
used to create and drop a scratch database. Needs ``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alphapulse_dagster.db.migrate import upgrade  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "ALPHAPULSE_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# wrk script: unique alert_id per request (thread id + counter); counts 200s per thread.
WRK_LUA = r"""
local threads = {}
local counter = 0
local tid = 0
local run = "RUN"

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"secret":"bench-secret","event":"SIGNAL_CREATED",' ..
    '"trade_id":"20190614_120000_BULLISH_%s_%d_%d",' ..
    '"symbol":"BTCUSD","time":"2019-06-14T12:00:00Z","timeframe":"60","direction":"BULLISH",' ..
    '"htf_alignment":{"240":"BULLISH","1D":"NEUTRAL"},' ..
    '"session":"NEW_YORK","market_state":"TRENDING",' ..
    '"alert_id":"%s-%d-%d"}', run, tid, counter, run, tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "text/plain"}, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local total_ok, total_bad = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
  end
  io.write(string.format("STATUS200 %d\nSTATUSOTHER %d\n", total_ok, total_bad))
  io.write(string.format("P50US %d\nP99US %d\nMAXUS %d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""

LUA_THREAD_ID = 'function init(args)\n  tid = wrk.thread:get("tid")\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "alphapulse_dagster.cli", "serve", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start; see {log}")


def run_wrk(url: str, duration: int, connections: int, threads: int) -> dict[str, float]:
    lua = WRK_LUA.replace("RUN", uuid.uuid4().hex[:8]).replace(
        "function init(args)\n", LUA_THREAD_ID
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
        "-s", handle.name, url,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(handle.name)

    def number(pattern: str) -> float:
        found = re.search(pattern, output)
        return float(found.group(1)) if found else 0.0

    ok = number(r"STATUS200 (\d+)")
    other = number(r"STATUSOTHER (\d+)")
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return {
        "ok": ok,
        "other": other,
        "socket_errors": socket_errors,
        "rps": ok / duration,
        "p50_ms": number(r"P50US (\d+)") / 1000,
        "p99_ms": number(r"P99US (\d+)") / 1000,
        "max_ms": number(r"MAXUS (\d+)") / 1000,
    }


def count_events(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM signal_events")).scalar_one()
    engine.dispose()
    return int(count)


def bench(database_url: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, float]]:
    env = {
        "ALPHAPULSE_DATABASE_URL": database_url,
        "ALPHAPULSE_WEBHOOK_SECRET": "bench-secret",
        "ALPHAPULSE_BENCH_NOOP": "1",
        "ALPHAPULSE_SPOOL_PATH": str(workdir / "spool.jsonl"),
    }
    process, url = start_server(env, workdir / "server.log")
    results: list[dict[str, float]] = []
    try:
        run_wrk(f"{url}/webhooks/noop", 2, args.connections, args.threads)  # warm-up
        for repeat in range(args.repeats):
            noop = run_wrk(f"{url}/webhooks/noop", args.duration, args.connections, args.threads)
            before = count_events(database_url)
            ingest = run_wrk(
                f"{url}/webhooks/tradingview", args.duration, args.connections, args.threads
            )
            time.sleep(0.5)  # let the last in-flight batch commit
            rows = count_events(database_url) - before
            ingest["rows"] = rows
            ingest["noop_rps"] = noop["rps"]
            ingest["noop_p99_ms"] = noop["p99_ms"]
            ingest["lost"] = max(0.0, ingest["ok"] - rows)
            print(
                f"run {repeat + 1}: noop {noop['rps']:.0f}/s p99 {noop['p99_ms']:.1f} ms | "
                f"ingest {ingest['rps']:.0f}/s p50 {ingest['p50_ms']:.1f} ms "
                f"p99 {ingest['p99_ms']:.1f} ms max {ingest['max_ms']:.0f} ms, "
                f"200s {ingest['ok']:.0f}, rows {rows}, non-200 {ingest['other']:.0f}, "
                f"socket errors {ingest['socket_errors']:.0f}",
                flush=True,
            )
            results.append(ingest)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="bench the embedded SQLite")
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--repeats", type=int, default=3, help="runs; medians reported")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="alphapulse-bench-"))
    admin = None
    name = ""
    if args.sqlite:
        database_url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"alphapulse_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        database_url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    try:
        upgrade(database_url)
        results = bench(database_url, args, workdir)
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    backend = "SQLite (WAL)" if args.sqlite else "Postgres"
    print()
    print("| backend | endpoint | responses/s | p50 ms | p99 ms | max ms | errors | lost |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {backend} | noop (validate only) | {median('noop_rps'):.0f} | | "
        f"{median('noop_p99_ms'):.1f} | | | |"
    )
    print(
        f"| {backend} | /webhooks/tradingview | {median('rps'):.0f} | {median('p50_ms'):.1f} | "
        f"{median('p99_ms'):.1f} | {median('max_ms'):.0f} | "
        f"{median('other') + median('socket_errors'):.0f} | {sum(r['lost'] for r in results):.0f} |"
    )
    print(f"\ningest / noop ratio: {median('rps') / median('noop_rps'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
