"""Hybrid-sync benchmark on the real Postgres (SPEC §13), measured THROUGH
``hybrid_sync_job`` — the Dagster job the schedule and the sensor run.

Creates a scratch database (dropped afterwards), bulk-loads a synthetic event log with
COPY (not timed), then runs the job in process (``execute_in_process``, in-process
executor, an ephemeral Dagster instance) at two history sizes (10k signals / ~95k events
and 100k signals / ~950k events):

- a cold full cycle (``full``: the first projection of the whole log, every signal
  reconciled and scored for the first time);
- a warm full cycle (every signal considered again, nothing new: writes nothing);
- an incremental cycle with 1,000 changed signals (new MFE_UPDATE / late SIGNAL_CREATED
  events; the sensor's run config, ``signal_ids``), repeated, median reported;
- the scheduled incremental cycle (no ids: cursor + what changes with time).

Each figure is given as the job step's time (``hybrid_sync_cycle``'s STEP_START to
STEP_SUCCESS, from the run's step stats) and the run's wall time (``execute_in_process``
from call to return: run creation, resources, the step, the checks, the event log).

Usage::

    flock /tmp/bench.lock python bench/bench_sync.py [--signals 100000] [--repeat 5]
    ALPHAPULSE_BENCH_PG_ADMIN_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres

To iterate without the setup, seed a template database once and run the job's incremental
cycles on clones of it: ``bench/sync_ab.py template`` then ``sync_ab.py job --db <clone>``
or ``sync_ab.py ab --job`` (the same ``changes``; figures are the step total with checks).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _load import PG_ADMIN_URL, scratch_database  # noqa: E402

from assets import hybrid_sync  # noqa: E402
from resources import ConfigResource, DatabaseResource  # noqa: E402
from sensors.hybrid_sync import SYNC_JOB_NAME, SYNC_STEP, sync_run_config  # noqa: E402

ADMIN_URL = PG_ADMIN_URL  # sync_ab.py reads it from here
# the synthetic history ends now: the job reads the real clock
NOW = datetime.now(UTC).replace(microsecond=0)
SYMBOLS = [f"SYM{n:03d}USDT" for n in range(200)]
HTF = {"4h": "BULLISH", "1d": "NEUTRAL"}
COLUMNS = (
    "source",
    "event_type",
    "signal_id",
    "trade_id",
    "symbol",
    "event_time",
    "received_at",
    "payload",
    "idempotency_key",
)


def signal_events_for(n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """About ten events for signal ``n`` over the 30 days before NOW: 75% created →
    entry → MFE updates → exit (10% still open), 20% confirmed without SIGNAL_CREATED,
    5% created then cancelled."""
    symbol = SYMBOLS[n % len(SYMBOLS)]
    start = NOW - timedelta(days=30) + timedelta(seconds=n * 25 % (29 * 86400))
    long = n % 2 == 0
    trade_id = start.strftime("%Y%m%d_%H%M%S_") + ("BULLISH" if long else "BEARISH") + f"_{n}"
    signal_id = f"{symbol}:{trade_id}"
    entry_price = 100.0 + n % 50
    stop = entry_price * (0.97 if long else 1.03)
    group = n % 20
    rows: list[tuple[str, datetime, dict[str, Any]]] = []
    created = group >= 4  # groups 0..3 (20%) have no SIGNAL_CREATED
    cancelled = group == 4  # 5%
    if created:
        rows.append(
            (
                "SIGNAL_CREATED",
                start,
                {
                    "timeframe": "1h",
                    "direction": "BULLISH" if long else "BEARISH",
                    "htf_alignment": HTF,
                    "session": "LONDON",
                    "market_state": "TRENDING",
                },
            )
        )
    if cancelled:
        rows.append(("CANCELLED", start + timedelta(hours=2), {"reason": "invalidated"}))
    else:
        entry = {
            "timeframe": "1h",
            "direction": "LONG" if long else "SHORT",
            "entry_price": entry_price,
            "stop_loss": stop,
        }
        if n % 3 == 0:
            entry["targets"] = [entry_price * (1.03 if long else 0.97)]
        rows.append(("ENTRY", start + timedelta(hours=1), entry))
        for k in range(7 if created else 8):
            mfe = round(rng.random() * 2, 3)
            rows.append(
                (
                    "MFE_UPDATE",
                    start + timedelta(hours=2 + k),
                    {"mfe": mfe, "mae": round(rng.random(), 3)},
                )
            )
        if group % 10 != 9:  # 10% stay open
            rows.append(
                (
                    "EXIT",
                    start + timedelta(hours=12),
                    {"exit_price": entry_price, "exit_reason": "TARGET"},
                )
            )
    out = []
    for k, (event_type, at, payload) in enumerate(rows):
        body = {"event": event_type, "trade_id": trade_id, "symbol": symbol, "time": at.isoformat()}
        body.update(payload)
        out.append(
            (
                "tradingview",
                event_type,
                signal_id,
                trade_id,
                symbol,
                at,
                at,
                json.dumps(body),
                f"bench:{n}:{k}",
            )
        )
    return out


def copy_events(url: str, rows: list[tuple[Any, ...]]) -> None:
    import psycopg

    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY signal_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE signal_events")


def load(url: str, first: int, last: int, rng: random.Random) -> int:
    rows: list[tuple[Any, ...]] = []
    for n in range(first, last):
        rows.extend(signal_events_for(n, rng))
    copy_events(url, rows)
    return len(rows)


def changes(url: str, batch: int, rng: random.Random, population: int) -> list[str]:
    """New events for ``batch`` random signals: an MFE_UPDATE, or a late SIGNAL_CREATED for
    the ones that never had one. Returns their signal ids."""
    picks = rng.sample(range(population), batch)
    rows = []
    stamp = uuid.uuid4().hex[:8]
    ids = []
    for n in picks:
        symbol = SYMBOLS[n % len(SYMBOLS)]
        base = signal_events_for(n, random.Random(n))[0]
        signal_id, trade_id = base[2], base[3]
        ids.append(signal_id)
        at = NOW - timedelta(minutes=5)
        if n % 20 < 4:
            body: dict[str, Any] = {
                "event": "SIGNAL_CREATED",
                "timeframe": "1h",
                "direction": "BULLISH" if n % 2 == 0 else "BEARISH",
                "htf_alignment": HTF,
                "session": "NY",
                "market_state": "RANGING",
            }
            kind, at = "SIGNAL_CREATED", base[5] - timedelta(hours=1)
        else:
            body = {"event": "MFE_UPDATE", "mfe": round(rng.random() * 3, 3), "mae": 0.5}
            kind = "MFE_UPDATE"
        body.update({"trade_id": trade_id, "symbol": symbol, "time": at.isoformat()})
        rows.append(
            (
                "tradingview",
                kind,
                signal_id,
                trade_id,
                symbol,
                at,
                NOW,
                json.dumps(body),
                f"change:{stamp}:{n}",
            )
        )
    copy_events(url, rows)
    return ids


class Job:
    """``hybrid_sync_job`` bound to the scratch database, run in process."""

    def __init__(self, url: str) -> None:
        resources = {
            "database": DatabaseResource(url=url),
            "app_config": ConfigResource(config_dir=str(ROOT / "config")),
        }
        defs = dg.Definitions.merge(hybrid_sync.defs, dg.Definitions(resources=resources))
        self.job = defs.resolve_job_def(SYNC_JOB_NAME)
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, **scope: Any) -> dict[str, Any]:
        """One run: step seconds, wall seconds, this process's CPU seconds, the step's
        metadata by asset."""
        started, cpu = time.perf_counter(), time.process_time()
        result = self.job.execute_in_process(
            run_config=sync_run_config(scope), instance=self.instance
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert result.success
        (step,) = [
            s for s in self.instance.get_run_step_stats(result.run_id) if s.step_key == SYNC_STEP
        ]
        assert step.start_time is not None and step.end_time is not None
        metadata = {
            event.materialization.asset_key.to_user_string(): {
                k: v.value for k, v in event.materialization.metadata.items()
            }
            for event in result.get_asset_materialization_events()
        }
        step_seconds = step.end_time - step.start_time
        return {"step": step_seconds, "wall": wall, "cpu": cpu, "metadata": metadata}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="skip the VACUUM ANALYZE before the incremental runs (see vacuum())",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    results: dict[str, Any] = {}
    with scratch_database() as url:  # with the schema
        job = Job(url)
        job.run()  # warm the process (imports, statement caches) on the empty database
        loaded_signals = loaded_events = 0
        for size in (args.small, args.signals):
            started = time.perf_counter()
            loaded_events += load(url, loaded_signals, size, rng)
            loaded_signals = size
            print(
                f"[{size} signals] {loaded_events} events loaded in "
                f"{time.perf_counter() - started:.1f}s",
                flush=True,
            )
            analyze(url)
            cold = job.run(full=True)
            warm = job.run(full=True)
            if args.no_vacuum:
                analyze(url)
            else:
                vacuum(url)
            box = box_speed()
            incremental = []
            for _ in range(args.repeat):
                ids = changes(url, args.changed, rng, size)
                incremental.append(job.run(signal_ids=ids, full=False))
            changes(url, args.changed, rng, size)
            scheduled = job.run()
            last = incremental[-1]["metadata"]
            results[str(size)] = {
                "events": loaded_events,
                "full_cold_step_s": round(cold["step"], 2),
                "full_cold_wall_s": round(cold["wall"], 2),
                "full_warm_step_s": round(warm["step"], 3),
                "full_warm_wall_s": round(warm["wall"], 3),
                "box_loop_s": round(box, 3),
                "incremental_1000_step_median_s": round(
                    statistics.median(r["step"] for r in incremental), 3
                ),
                "incremental_1000_wall_median_s": round(
                    statistics.median(r["wall"] for r in incremental), 3
                ),
                "incremental_1000_step_runs_s": [round(r["step"], 3) for r in incremental],
                # this process's CPU for the run (Python and the driver; not the server's)
                "incremental_1000_cpu_median_s": round(
                    statistics.median(r["cpu"] for r in incremental), 3
                ),
                "incremental_fields_changed_last": last["reconciled_signals"]["fields_changed"],
                "incremental_seconds_by_asset_last": {
                    key: values.get("seconds") for key, values in last.items()
                },
                "scheduled_step_s": round(scheduled["step"], 3),
                "scheduled_wall_s": round(scheduled["wall"], 3),
                "cold_fields_changed": cold["metadata"]["reconciled_signals"]["fields_changed"],
                "warm_fields_changed": warm["metadata"]["reconciled_signals"]["fields_changed"],
                "health_score": warm["metadata"]["signal_health"]["health_score"],
                "total_gaps": warm["metadata"]["signal_health"]["total_gaps"],
            }
            print(json.dumps({size: results[str(size)]}, indent=2), flush=True)


def analyze(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def box_speed() -> float:
    """Seconds for a fixed pure-Python loop, timed just before the incremental runs. The
    shared 2-core box drifts by ±20-30% over minutes; this puts a run's figures in context
    (``box_loop_s`` in the output, from round VI of bench/RESULTS.md: lower is a faster
    moment of the box)."""
    started = time.perf_counter()
    total = 0
    for n in range(6_000_000):
        total += n * n % 7
    return time.perf_counter() - started


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE`` after the bulk load and the cold full sync, as autovacuum would
    (it is off on the CI machine's Postgres, on in any production one): the cold sync
    rewrites every registry row, and without it the incremental runs read a heap twice its
    size. ``--no-vacuum`` measures without."""
    import psycopg

    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


if __name__ == "__main__":
    main()
