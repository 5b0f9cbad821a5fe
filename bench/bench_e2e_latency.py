"""Webhook → reconciled latency under a running Dagster daemon (SPEC §13).

Target: median ≤ 5 s, max ≤ 10 s.

Production-shaped: a Postgres-backed instance from ``deploy/dagster.yaml`` in a temporary
``DAGSTER_HOME``; ``dagster api grpc`` (code server), ``dagster-daemon run`` and
``alphapulse serve`` as separate processes on loopback; ``signal_created_sensor`` and
``hybrid_sync_schedule`` turned on with the ``dagster`` CLI. Each repetition posts an ENTRY
then the SIGNAL_CREATED of a new TradingView signal and measures the seconds from the
SIGNAL_CREATED's 200 until ``GET /signals/{id}`` shows ``htf_alignment`` and
``confirmation_time`` with Tier 0 provenance. Scratch databases (instance and app) are
created and dropped; every process is stopped.

Usage::

    PYTHONPATH=. .venv/bin/python bench/bench_e2e_latency.py [--repeat 5] [--gap 7]
    # admin URL: ALPHAPULSE_BENCH_PG_ADMIN_URL
    #   (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphapulse_dagster.db.migrate import upgrade
from tests.dagster_stack import (
    DaemonStack,
    database_url,
    entry_then_created_latency,
    run_timings,
    scratch_databases,
    sensor_tick_gaps,
    wait_daemon_healthy,
)

ADMIN_URL = os.environ.get(
    "ALPHAPULSE_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="signals to time (default 5)")
    parser.add_argument(
        "--gap",
        type=float,
        default=7.0,
        help="seconds between repetitions, so they land at different points of the sensor's "
        "interval (default 7)",
    )
    args = parser.parse_args()
    times: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="alphapulse_e2e_") as tmp,
        scratch_databases(ADMIN_URL, "alphapulse_bench_dagster", "alphapulse_bench_app") as dbs,
    ):
        instance_db, app_db = dbs
        app_url = database_url(ADMIN_URL, app_db)
        upgrade(app_url)
        stack = DaemonStack(Path(tmp), ADMIN_URL, instance_db, app_url)
        try:
            t0 = time.monotonic()
            stack.start()
            stack.turn_on(sensors=("signal_created_sensor",), schedules=("hybrid_sync_schedule",))
            wait_daemon_healthy(stack)
            print(f"stack up in {time.monotonic() - t0:.1f}s (code server, daemon, API)")
            for n in range(args.repeat):
                trade_id = f"20250106_{120000 + n:06d}_LONG"
                seconds, _ = entry_then_created_latency(stack.api, trade_id, timeout=90)
                times.append(seconds)
                print(f"run {n + 1}: {seconds:.2f}s", flush=True)
                if n + 1 < args.repeat:
                    time.sleep(args.gap)
            print("runs (queued→started s, of it launched→started s, run s):")
            for run in run_timings(stack):
                phases = (run["queued_to_start"], run["launch_to_start"], run["run_seconds"])
                print(
                    f"  {run['run_id']} {run['job']} {run['trigger']:<22} {run['status']:<8} "
                    + " ".join("-" if p is None else f"{p:.2f}" for p in phases)
                )
            gaps = sensor_tick_gaps(stack, "signal_created_sensor")
            print(f"signal_created_sensor ticks apart (s): {' '.join(f'{g:.1f}' for g in gaps)}")
        finally:
            stack.stop()
    print(
        f"webhook → reconciled: median {statistics.median(times):.2f}s, "
        f"min {min(times):.2f}s, max {max(times):.2f}s over {len(times)} signals "
        "(target: median ≤ 5 s, max ≤ 10 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
