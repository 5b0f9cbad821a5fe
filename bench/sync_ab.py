"""Interleaved A/B of the incremental hybrid sync on one database (a noisy box's
before/after).

A shared 2-core machine drifts by ±20% within minutes, so two benchmark runs minutes
apart cannot show a 5–15% change. This script instead takes turns: checkout A, then
checkout B, then A again, and so on. Each turn runs a few incremental cycles (1,000
changed signals each) in a fresh process on the *same* copy of a synced, vacuumed
database, and prints the median wall time and Python CPU of those cycles.

Usage (from the repository root; both checkouts must know the database's schema)::

    python bench/sync_ab.py template --signals 100000     # once: ~2 min at 100k
    python bench/sync_ab.py ab --a ../old-checkout --b . --pairs 3 --cycles 6
    python bench/sync_ab.py cycles --db NAME --cycles 6   # one turn (used by ab)
    python bench/sync_ab.py ab --a ../old-checkout --b . --job   # through hybrid_sync_job

The template database is ``alphapulse_ab_tpl_<signals>``; ``ab`` clones it and drops
the clone at the end. Admin URL: ``ALPHAPULSE_BENCH_PG_ADMIN_URL`` (as bench_sync.py).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa


def _admin() -> sa.Engine:
    from bench_sync import ADMIN_URL

    return sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def _url(name: str) -> str:
    from bench_sync import ADMIN_URL

    return sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(False)


def pin_now(url: str) -> None:
    """Set ``bench_sync.NOW`` to the template's: the synthetic log is laid out backwards from
    it, and :func:`bench_sync.changes` names the changed signals from it. A later process
    has a later clock; left alone, its "changes" would create new signals (every gap
    opening) instead of updating the template's. Signal 0's first event is its ENTRY, one
    hour after its start, 30 days before NOW."""
    import bench_sync

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        entry = conn.execute(
            sa.text("SELECT event_time FROM signal_events WHERE idempotency_key = 'bench:0:0'")
        ).scalar_one()
    engine.dispose()
    bench_sync.NOW = entry - timedelta(hours=1) + timedelta(days=30)


def template(signals: int) -> None:
    """Create ``alphapulse_ab_tpl_<signals>``: the synthetic log loaded, projected, fully
    synced and vacuumed (what bench_sync.py measures incremental cycles on)."""
    from bench_sync import NOW, load, vacuum

    from alphapulse_dagster.config import AppConfig
    from alphapulse_dagster.db.engine import make_engine
    from alphapulse_dagster.db.migrate import upgrade
    from alphapulse_dagster.sync.sync_cycle import SyncRequest, run_sync

    name = f"alphapulse_ab_tpl_{signals}"
    with _admin().connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = _url(name)
    upgrade(url)
    load(url, 0, signals, random.Random(7))
    engine = make_engine(url)
    run_sync(engine, AppConfig(), NOW, request=SyncRequest(full=True))
    engine.dispose()
    vacuum(url)
    print(f"template {name} ready")


def cycles(db: str, signals: int, count: int, seed: int) -> None:
    """``count`` incremental cycles (after one untimed warm-up) on database ``db``."""
    import bench_sync
    from bench_sync import changes

    from alphapulse_dagster.config import AppConfig
    from alphapulse_dagster.db.engine import make_engine
    from alphapulse_dagster.sync import sync_cycle

    def run_sync(engine: sa.Engine, config: object, now: object, ids: list[str]) -> None:
        if hasattr(sync_cycle, "SyncRequest"):  # (a checkout before it took signal_ids)
            sync_cycle.run_sync(engine, config, now, request=sync_cycle.SyncRequest(ids))
        else:
            sync_cycle.run_sync(engine, config, now, signal_ids=ids)  # type: ignore[call-arg]

    url, config, rng = _url(db), AppConfig(), random.Random(seed)
    pin_now(url)
    engine = make_engine(url)
    walls, cpus = [], []
    for n in range(count + 1):
        ids = changes(url, 1000, rng, signals)
        wall, cpu = time.perf_counter(), time.process_time()
        run_sync(engine, config, bench_sync.NOW, ids)
        if n:  # the first cycle warms the pool and the statement caches
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    engine.dispose()
    print(f"wall {statistics.median(walls):.3f} s  python cpu {statistics.median(cpus):.3f} s")


def job_cycles(db: str, signals: int, count: int, seed: int) -> None:
    """``count`` incremental runs of ``hybrid_sync_job`` (after one untimed warm-up), in
    process, with the sensor's run config for 1,000 changed signals — each checkout's own
    job and run config. Prints the medians of the run's step time (every step: the sync's
    assets and their checks) and of its wall time."""
    import dagster as dg
    from bench_sync import changes

    import sensors.hybrid_sync as sensor
    from assets import hybrid_sync
    from resources import ConfigResource, DatabaseResource

    def run_config(ids: list[str]) -> dict[str, object]:
        scope = {"signal_ids": ids, "full": False}
        if hasattr(sensor, "sync_run_config"):
            return sensor.sync_run_config(scope)  # type: ignore[no-any-return]
        return {"ops": {name: {"config": scope} for name in sensor.SCOPED_ASSETS}}  # (before)

    url, rng = _url(db), random.Random(seed)
    pin_now(url)
    config_dir = str(Path(hybrid_sync.__file__).resolve().parents[1] / "config")
    resources = {
        "database": DatabaseResource(url=url),
        "app_config": ConfigResource(config_dir=config_dir),
    }
    defs = dg.Definitions.merge(hybrid_sync.defs, dg.Definitions(resources=resources))
    job, instance = defs.resolve_job_def("hybrid_sync_job"), dg.DagsterInstance.ephemeral()
    steps, walls = [], []
    for n in range(count + 1):
        ids = changes(url, 1000, rng, signals)
        wall = time.perf_counter()
        result = job.execute_in_process(run_config=run_config(ids), instance=instance)
        wall = time.perf_counter() - wall
        assert result.success
        stats = instance.get_run_step_stats(result.run_id)
        if n:
            steps.append(sum((s.end_time or 0) - (s.start_time or 0) for s in stats))
            walls.append(wall)
    print(f"steps {statistics.median(steps):.3f} s  wall {statistics.median(walls):.3f} s")


def ab(a: Path, b: Path, signals: int, pairs: int, count: int, job: bool = False) -> None:
    name = f"alphapulse_ab_{uuid.uuid4().hex[:8]}"
    with _admin().connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "alphapulse_ab_tpl_{signals}"')
    try:
        for pair in range(pairs):
            for label, repo in (("A", a), ("B", b)):
                # each side's own script: bench_sync.py puts its checkout first on sys.path,
                # so one script would run its own checkout's code on both sides
                script = repo.resolve() / "bench" / "sync_ab.py"
                env = {**os.environ, "PYTHONPATH": f"{repo.resolve()}:{script.parent}"}
                seed = str(1000 * pair + (label == "B"))
                command = [sys.executable, str(script), "job" if job else "cycles", "--db", name]
                command += ["--signals", str(signals), "--cycles", str(count), "--seed", seed]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                print(f"{label} ({repo}): {out.stdout.strip()}", flush=True)
    finally:
        with _admin().connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tpl = sub.add_parser("template")
    tpl.add_argument("--signals", type=int, default=100_000)
    one = sub.add_parser("cycles")
    one.add_argument("--db", required=True)
    one.add_argument("--signals", type=int, default=100_000)
    one.add_argument("--cycles", type=int, default=6)
    one.add_argument("--seed", type=int, default=11)
    through = sub.add_parser("job")
    through.add_argument("--db", required=True)
    through.add_argument("--signals", type=int, default=100_000)
    through.add_argument("--cycles", type=int, default=6)
    through.add_argument("--seed", type=int, default=11)
    both = sub.add_parser("ab")
    both.add_argument("--a", type=Path, required=True)
    both.add_argument("--b", type=Path, default=Path("."))
    both.add_argument("--signals", type=int, default=100_000)
    both.add_argument("--pairs", type=int, default=3)
    both.add_argument("--cycles", type=int, default=6)
    both.add_argument("--job", action="store_true", help="through hybrid_sync_job")
    args = parser.parse_args()
    if args.command == "template":
        template(args.signals)
    elif args.command == "cycles":
        cycles(args.db, args.signals, args.cycles, args.seed)
    elif args.command == "job":
        job_cycles(args.db, args.signals, args.cycles, args.seed)
    else:
        ab(args.a, args.b, args.signals, args.pairs, args.cycles, args.job)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
