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
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import SECRET, count_rows, run_load, scratch_database, start_server

from alphapulse_dagster.db.migrate import upgrade


def run_wrk(url: str, duration: int, connections: int, threads: int) -> dict[str, float]:
    result = run_load(url, duration, connections, "valid", threads=threads)
    return {
        "ok": float(result.ok),
        "other": float(result.other),
        "socket_errors": float(result.socket_errors),
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
    }


def count_events(url: str) -> int:
    return count_rows(url, "signal_events")


def bench(database_url: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, float]]:
    env = {
        "ALPHAPULSE_DATABASE_URL": database_url,
        "ALPHAPULSE_WEBHOOK_SECRET": SECRET,
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
    if args.sqlite:
        database_url = f"sqlite:///{workdir / 'bench.db'}"
        upgrade(database_url)
        results = bench(database_url, args, workdir)
    else:
        with scratch_database() as database_url:
            results = bench(database_url, args, workdir)

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
