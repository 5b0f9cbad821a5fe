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
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import (
    SECRET,
    count_rows,
    machine_idle,
    process_cpu,
    run_load,
    scratch_database,
    start_load,
    start_server,
)

from alphapulse_dagster.webhooks.ingest import webhook_event
from alphapulse_dagster.webhooks.spool import Spool

CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/alphapulse_down"


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
        run_load(f"{url}/webhooks/tradingview", 2, args.connections, expect=(503,))  # warm-up
        for target_mb in args.spool_mb:
            top_up(spool, int(target_mb * 1_000_000))
            before = spool.pending()
            run = run_load(
                f"{url}/webhooks/tradingview", args.duration, args.connections, expect=(503,)
            )
            result: dict[str, float] = {
                "rps": run.rps,
                "p50_ms": run.p50_ms,
                "p99_ms": run.p99_ms,
                "other": float(run.other + run.socket_errors),
            }
            result["spool_start_mb"] = before / 1e6
            result["spool_end_mb"] = spool.pending() / 1e6
            print(
                f"outage, spool {result['spool_start_mb']:.1f} → {result['spool_end_mb']:.1f} MB: "
                f"{result['rps']:.0f} spooled 503/s, p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, other answers or socket errors "
                f"{result['other']:.0f}",
                flush=True,
            )
            results.append(result)
    finally:
        process.terminate()
        process.wait(timeout=15)
    return results


# --- 2. valid p99 under a reject flood ---------------------------------------------------


def other_local_address() -> str | None:
    """An IPv4 address of this machine other than loopback, or None. Connecting a UDP
    socket sends nothing: it only picks the route, and so the address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def _measured(pid: int, run: Any) -> tuple[Any, float, float]:
    """``run()``'s result, the server's CPU use over it (1.0 = one core) and the machine's
    idle share (1.0 = every core idle)."""
    cpu, idle, start = process_cpu(pid), machine_idle(), time.monotonic()
    result = run()
    wall = time.monotonic() - start
    cores = os.cpu_count() or 1
    return result, (process_cpu(pid) - cpu) / wall, (machine_idle() - idle) / wall / cores


def bench_flood(args: argparse.Namespace, database_url: str, workdir: Path) -> list[dict[str, Any]]:
    """Per repeat: the valid stream alone, then the same valid stream beside the flood.
    The valid stream comes from 127.0.0.1; the flood from ``args.flood_from`` (another
    address of this machine by default: two sources, as a flood from elsewhere would be)."""
    env = {
        "ALPHAPULSE_DATABASE_URL": database_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
        "ALPHAPULSE_SPOOL_PATH": str(workdir / "flood-spool.jsonl"),
    }
    apart = not args.flood_from.startswith("127.")
    process, url = start_server(
        env, workdir / "flood-server.log", "0.0.0.0" if apart else "127.0.0.1"
    )
    flood_url = f"http://{args.flood_from}:{url.rsplit(':', 1)[1]}/webhooks/tradingview"
    valid_url = f"{url}/webhooks/tradingview"
    duration, connections = args.duration, args.valid_connections
    results = []
    try:
        run_load(valid_url, 2, connections)  # warm-up
        for repeat in range(args.repeats):
            quiet, quiet_cpu, quiet_idle = _measured(
                process.pid, lambda: run_load(valid_url, duration, connections)
            )
            rejects_before = count_rows(database_url, "webhook_rejects")
            flood = start_load(
                flood_url, duration + 2, args.flood_connections, "flood", expect=(401, 429)
            )
            time.sleep(1)  # the flood is under way
            flooded, flooded_cpu, flooded_idle = _measured(
                process.pid, lambda: run_load(valid_url, duration, connections)
            )
            flood_result = flood.result()
            time.sleep(1)
            health = httpx.get(f"{url}/healthz", timeout=5).json()
            result = {
                "quiet_rps": quiet.rps,
                "quiet_p50_ms": quiet.p50_ms,
                "quiet_p99_ms": quiet.p99_ms,
                "flooded_rps": flooded.rps,
                "flooded_p50_ms": flooded.p50_ms,
                "flooded_p99_ms": flooded.p99_ms,
                "ratio": flooded.p99_ms / quiet.p99_ms if quiet.p99_ms else 0.0,
                "flood_401_rps": flood_result.statuses.get(401, 0) / flood_result.duration,
                "flood_429_rps": flood_result.statuses.get(429, 0) / flood_result.duration,
                "flood_other": flood_result.other + flood_result.socket_errors,
                "rejects_written": count_rows(database_url, "webhook_rejects") - rejects_before,
                "rejects_dropped": health["rejects_dropped"],
                "quiet_other": quiet.other + quiet.socket_errors,
                "flooded_other": flooded.other + flooded.socket_errors,
                "server_cpu_quiet": quiet_cpu,
                "server_cpu_flooded": flooded_cpu,
                "idle_quiet": quiet_idle,
                "idle_flooded": flooded_idle,
                "valid_client_cpu": flooded.client_cpu / flooded.duration,
                "flood_client_cpu": flood_result.client_cpu / flood_result.duration,
            }
            print(
                f"flood run {repeat + 1}: valid {quiet.rps:.0f}/s alone, {flooded.rps:.0f}/s "
                f"flooded; p50/p99 alone {quiet.p50_ms:.1f}/{quiet.p99_ms:.1f} ms, flooded "
                f"{flooded.p50_ms:.1f}/{flooded.p99_ms:.1f} ms (p99 ×{result['ratio']:.2f}); "
                f"flood {result['flood_401_rps']:.0f} 401/s + {result['flood_429_rps']:.0f} "
                f"429/s (other {result['flood_other']:.0f}); reject rows written "
                f"{result['rejects_written']}, dropped so far {health['rejects_dropped']}; "
                f"valid non-200 alone {result['quiet_other']} flooded "
                f"{result['flooded_other']}; server CPU {quiet_cpu:.0%} → {flooded_cpu:.0%} "
                f"of a core, machine idle {quiet_idle:.0%} → {flooded_idle:.0%}, wrk CPU "
                f"valid {result['valid_client_cpu']:.0%} flood {result['flood_client_cpu']:.0%}",
                flush=True,
            )
            results.append(result)
    finally:
        process.terminate()
        process.wait(timeout=15)
    return results


def print_flood(args: argparse.Namespace, flood: list[dict[str, Any]]) -> None:
    print(
        f"\nvalid stream: {args.valid_connections} connections from 127.0.0.1; flood: "
        f"{args.flood_connections} connections from {args.flood_from}\n"
    )
    print(
        "| run | alone 200/s | alone p50 / p99 ms | flooded 200/s | flooded p50 / p99 ms "
        "| p99 ratio | flood 401/s | flood 429/s | reject rows | server CPU alone → flooded "
        "| machine idle | wrk CPU valid / flood |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, r in enumerate(flood, start=1):
        print(
            f"| {n} | {r['quiet_rps']:.0f} | {r['quiet_p50_ms']:.1f} / {r['quiet_p99_ms']:.1f} "
            f"| {r['flooded_rps']:.0f} | {r['flooded_p50_ms']:.1f} / {r['flooded_p99_ms']:.1f} "
            f"| ×{r['ratio']:.2f} | {r['flood_401_rps']:.0f} | {r['flood_429_rps']:.0f} "
            f"| {r['rejects_written']} | {r['server_cpu_quiet']:.0%} → "
            f"{r['server_cpu_flooded']:.0%} | {r['idle_quiet']:.0%} → {r['idle_flooded']:.0%} "
            f"| {r['valid_client_cpu']:.0%} / {r['flood_client_cpu']:.0%} |"
        )
    ratio = statistics.median(r["ratio"] for r in flood)
    print(f"\np99 ratio, median of {len(flood)} runs: ×{ratio:.2f} (target ≤ 2)")


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
    parser.add_argument(
        "--flood-from",
        default=other_local_address(),
        help="address the flood connects to, and so comes from (default: this machine's "
        "non-loopback address; 127.0.0.1 puts the flood on the valid stream's address)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="flood runs; medians reported")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    if args.which != "outage" and not args.flood_from:
        raise SystemExit("no non-loopback address to flood from: pass --flood-from")
    workdir = Path(tempfile.mkdtemp(prefix="alphapulse-outage-bench-"))
    if args.which in ("outage", "both"):
        outage = bench_outage(args, workdir)
        print("\n| spool at start → end (MB) | spooled 503/s | p50 ms | p99 ms | other |")
        print("|---|---|---|---|---|")
        for r in outage:
            print(
                f"| {r['spool_start_mb']:.1f} → {r['spool_end_mb']:.1f} | {r['rps']:.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['other']:.0f} |"
            )
    if args.which in ("flood", "both"):
        with scratch_database() as database_url:
            flood = bench_flood(args, database_url, workdir)

        print_flood(args, flood)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
