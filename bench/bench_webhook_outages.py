"""Webhook intake on a bad day (SPEC §13, §14), on a real ``alphapulse serve``:

1. ``outage``: Postgres unreachable (the server's URL points at a closed port, as when
   Postgres is stopped), ``wrk`` posting unique events as fast as the server answers. Each
   run starts with the spool topped up to a target size (0, 6, 12, 18 MB by default: framed
   records, as the server writes them) and reports 503-``spooled`` answers/s and their p99,
   so it shows whether intake stays flat as the spool grows.
2. ``flood``: Postgres up. A valid stream (``wrk``, 4 connections, unique SIGNAL_CREATED
   events) alone, then with a concurrent flood of unauthenticated ~4 KB requests (a second
   ``wrk``, 16 connections, wrong secret). Reports the
   valid stream's p50/p99 in both and their ratio (target ≤ 2×), and how many reject rows
   the flood wrote.

    python bench/bench_webhook_outages.py                 # both
    python bench/bench_webhook_outages.py outage --duration 10
    python bench/bench_webhook_outages.py flood --duration 20

Needs ``wrk`` (``apt-get install wrk``). Postgres: ``ALPHAPULSE_BENCH_PG_ADMIN_URL`` (a
scratch database is created and dropped).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alphapulse_dagster.db.migrate import upgrade  # noqa: E402
from alphapulse_dagster.webhooks.ingest import webhook_event  # noqa: E402
from alphapulse_dagster.webhooks.spool import Spool  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "bench"))
from bench_webhooks import PG_ADMIN_URL, start_server  # noqa: E402

SECRET = "bench-secret"
CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/alphapulse_down"

# wrk script: __EXPECT__ is the status counted as a success; __BODY__ "valid" (a unique event per
# request) or "flood" (~4 KB with a wrong secret).
WRK_LUA = r"""
local threads = {}
function setup(thread) thread:set("tid", #threads + 1) table.insert(threads, thread) end
function init(args) ok = 0 bad = 0 counter = 0 tid = wrk.thread:get("tid") end
local padding = string.rep("x", 3900)
function request()
  counter = counter + 1
  local body
  if "__BODY__" == "flood" then
    body = string.format('{"secret":"guess-%d","event":"SIGNAL_CREATED","note":"%s"}',
      counter, padding)
  else
    body = string.format(
      '{"secret":"__SECRET__","event":"SIGNAL_CREATED",' ..
      '"trade_id":"20190614_120000_BULLISH___RUN___%d_%d","symbol":"BTCUSD",' ..
      '"time":"2019-06-14T12:00:00Z","timeframe":"60","direction":"BULLISH",' ..
      '"htf_alignment":{"240":"BULLISH","1D":"NEUTRAL"},"session":"NEW_YORK",' ..
      '"market_state":"TRENDING","alert_id":"__RUN__-%d-%d"}', tid, counter, tid, counter)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "text/plain"}, body)
end
function response(status, headers, body)
  if status == __EXPECT__ then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local total_ok, total_bad = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
  end
  io.write(string.format("EXPECTED %d\nOTHER %d\n", total_ok, total_bad))
  io.write(string.format("P50US %d\nP99US %d\n", latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_process(
    url: str, duration: int, connections: int, body: str, expect: int
) -> subprocess.Popen[str]:
    lua = (
        WRK_LUA.replace("__BODY__", body)
        .replace("__SECRET__", SECRET)
        .replace("__RUN__", uuid.uuid4().hex[:8])
        .replace("__EXPECT__", str(expect))
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", handle.name]
    return subprocess.Popen([*command, url], stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str], duration: int) -> dict[str, float]:
    output, _ = process.communicate()

    def number(pattern: str) -> float:
        found = re.search(pattern, output)
        return float(found.group(1)) if found else 0.0

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return {
        "expected": number(r"EXPECTED (\d+)"),
        "other": number(r"OTHER (\d+)"),
        "socket_errors": float(errors),
        "rps": number(r"EXPECTED (\d+)") / duration,
        "p50_ms": number(r"P50US (\d+)") / 1000,
        "p99_ms": number(r"P99US (\d+)") / 1000,
    }


# --- 1. intake during an outage as the spool grows ---------------------------------------


def top_up(spool: Spool, target_bytes: int) -> None:
    template = {
        "secret": SECRET,
        "event": "SIGNAL_CREATED",
        "symbol": "BTCUSD",
        "time": "2019-06-14T12:00:00Z",
        "timeframe": "60",
        "direction": "BULLISH",
        "htf_alignment": {"240": "BULLISH", "1D": "NEUTRAL"},
        "session": "NEW_YORK",
        "market_state": "TRENDING",
    }
    n = 0
    while spool.pending() < target_bytes:  # the database is down: nothing replays
        batch = []
        for _ in range(2000):
            n += 1
            tag = f"fill-{uuid.uuid4().hex[:6]}-{n}"
            batch.append(
                webhook_event({**template, "trade_id": f"20190614_120000_{tag}", "alert_id": tag})
            )
        spool.append(batch)


def bench_outage(args: argparse.Namespace, workdir: Path) -> list[dict[str, float]]:
    spool = Spool(workdir / "outage-spool.jsonl")
    env = {
        "ALPHAPULSE_DATABASE_URL": CLOSED_PORT_URL,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(spool.path),
    }
    process, url = start_server(env, workdir / "outage-server.log")
    results = []
    try:
        warm = wrk_process(f"{url}/webhooks/tradingview", 2, args.connections, "valid", 503)
        wrk_result(warm, 2)
        for target_mb in args.spool_mb:
            top_up(spool, int(target_mb * 1_000_000))
            before = spool.pending()
            run = wrk_process(
                f"{url}/webhooks/tradingview", args.duration, args.connections, "valid", 503
            )
            result = wrk_result(run, args.duration)
            result["spool_start_mb"] = before / 1e6
            result["spool_end_mb"] = spool.pending() / 1e6
            print(
                f"outage, spool {result['spool_start_mb']:.1f} → {result['spool_end_mb']:.1f} MB: "
                f"{result['rps']:.0f} spooled 503/s, p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, other {result['other']:.0f}, "
                f"socket errors {result['socket_errors']:.0f}",
                flush=True,
            )
            results.append(result)
    finally:
        process.terminate()
        process.wait(timeout=15)
    return results


# --- 2. valid p99 under a reject flood ---------------------------------------------------


def count_rows(database_url: str, table: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    engine.dispose()
    return int(count)


def bench_flood(args: argparse.Namespace, database_url: str, workdir: Path) -> list[dict[str, Any]]:
    env = {
        "ALPHAPULSE_DATABASE_URL": database_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(workdir / "flood-spool.jsonl"),
    }
    process, url = start_server(env, workdir / "flood-server.log")
    results = []
    try:
        valid = f"{url}/webhooks/tradingview"
        wrk_result(wrk_process(valid, 2, args.valid_connections, "valid", 200), 2)  # warm-up
        for repeat in range(args.repeats):
            quiet = wrk_result(
                wrk_process(valid, args.duration, args.valid_connections, "valid", 200),
                args.duration,
            )
            rejects_before = count_rows(database_url, "webhook_rejects")
            flood = wrk_process(
                f"{url}/webhooks/tradingview",
                args.duration + 2,
                args.flood_connections,
                "flood",
                401,
            )
            time.sleep(1)  # the flood is under way
            flooded = wrk_result(
                wrk_process(valid, args.duration, args.valid_connections, "valid", 200),
                args.duration,
            )
            flood_result = wrk_result(flood, args.duration + 2)
            time.sleep(1)
            health = httpx.get(f"{url}/healthz", timeout=5).json()
            written = count_rows(database_url, "webhook_rejects") - rejects_before
            result = {
                "quiet_p50_ms": quiet["p50_ms"],
                "quiet_p99_ms": quiet["p99_ms"],
                "flooded_p50_ms": flooded["p50_ms"],
                "flooded_p99_ms": flooded["p99_ms"],
                "ratio": flooded["p99_ms"] / quiet["p99_ms"] if quiet["p99_ms"] else 0.0,
                "flood_rps": flood_result["rps"],
                "flood_other": flood_result["other"],
                "rejects_written": written,
                "rejects_dropped": health["rejects_dropped"],
                "quiet_rps": quiet["rps"],
                "flooded_rps": flooded["rps"],
                "quiet_other": quiet["other"] + quiet["socket_errors"],
                "flooded_other": flooded["other"] + flooded["socket_errors"],
            }
            print(
                f"flood run {repeat + 1}: valid ({args.valid_connections} connections) "
                f"{quiet['rps']:.0f}/s alone, {flooded['rps']:.0f}/s flooded; p50/p99 quiet "
                f"{result['quiet_p50_ms']:.1f}/{result['quiet_p99_ms']:.1f} ms, flooded "
                f"{result['flooded_p50_ms']:.1f}/{result['flooded_p99_ms']:.1f} ms "
                f"(p99 ×{result['ratio']:.2f}); flood {result['flood_rps']:.0f} 401/s, "
                f"reject rows written {written}, dropped so far {health['rejects_dropped']}; "
                f"valid non-200 quiet {result['quiet_other']:.0f} flooded "
                f"{result['flooded_other']:.0f}",
                flush=True,
            )
            results.append(result)
    finally:
        process.terminate()
        process.wait(timeout=15)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=["outage", "flood", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (outage)")
    parser.add_argument(
        "--spool-mb", type=float, nargs="+", default=[0, 6, 12, 18], help="spool sizes (MB)"
    )
    parser.add_argument(
        "--valid-connections", type=int, default=4, help="wrk connections of the valid stream"
    )
    parser.add_argument("--flood-connections", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="flood runs; medians reported")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="alphapulse-outage-bench-"))
    if args.which in ("outage", "both"):
        outage = bench_outage(args, workdir)
        print("\n| spool at start → end (MB) | spooled 503/s | p50 ms | p99 ms | other |")
        print("|---|---|---|---|---|")
        for r in outage:
            print(
                f"| {r['spool_start_mb']:.1f} → {r['spool_end_mb']:.1f} | {r['rps']:.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['other'] + r['socket_errors']:.0f} |"
            )
    if args.which in ("flood", "both"):
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"alphapulse_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        database_url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
        try:
            upgrade(database_url)
            flood = bench_flood(args, database_url, workdir)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

        def median(key: str) -> float:
            return statistics.median(float(r[key]) for r in flood)

        print(
            f"\n| valid stream ({args.valid_connections} connections) | 200/s | p50 ms | p99 ms |"
        )
        print("|---|---|---|---|")
        print(
            f"| alone | {median('quiet_rps'):.0f} | {median('quiet_p50_ms'):.1f} | "
            f"{median('quiet_p99_ms'):.1f} |"
        )
        print(
            f"| with a {args.flood_connections}-connection flood "
            f"({median('flood_rps'):.0f} 401/s) | {median('flooded_rps'):.0f} | "
            f"{median('flooded_p50_ms'):.1f} | {median('flooded_p99_ms'):.1f} |"
        )
        print(f"\np99 ratio (median of runs): {median('ratio'):.2f}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
