"""Ways of running the same incremental sync, cycle by cycle in turn, in one process on one
database: what the pipelined writes and the Tier 0 short cut each save on this noisy box.

`sync_ab.py` compares two checkouts turn by turn (a few cycles each, in fresh processes);
this script compares switches of one checkout *cycle by cycle*, so the box's drift (±20%
over minutes) falls on every variant alike. Variants:

- ``serial``: the projection's writes on its read connection, one part (no pipelining);
- ``pipelined``: the shipped path — a second connection in pipeline mode, parts of 500;
- ``pipelined-250``: the same with parts of 250;
- ``no-short-cut``: pipelined, but ``tier0_settled`` always False (every payload read).

Usage (from the repository root; needs the template of ``sync_ab.py template``)::

    python bench/sync_interleave.py --signals 10000 --rounds 20
    python bench/sync_interleave.py --variants serial,pipelined --rounds 20
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from bench_sync import ADMIN_URL, NOW, changes

import alphapulse_dagster.sync.sync_cycle as sync_cycle
from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.engine import make_engine

SHIPPED = (sync_cycle._write_connection, sync_cycle.PIPELINED_CHUNK, sync_cycle.tier0_settled)


@contextlib.contextmanager
def _no_write_connection(engine: sa.Engine) -> Iterator[None]:
    yield None


def _set(write_connection: Callable[..., object], part: int, settled: Callable[..., bool]) -> None:
    sync_cycle._write_connection = write_connection  # type: ignore[assignment]
    sync_cycle.PIPELINED_CHUNK = part
    sync_cycle.tier0_settled = settled  # type: ignore[assignment]


VARIANTS: dict[str, Callable[[], None]] = {
    "serial": lambda: _set(_no_write_connection, SHIPPED[1], SHIPPED[2]),
    "pipelined": lambda: _set(*SHIPPED),
    "pipelined-250": lambda: _set(SHIPPED[0], 250, SHIPPED[2]),
    "no-short-cut": lambda: _set(SHIPPED[0], SHIPPED[1], lambda *args: False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--variants", default="serial,pipelined,no-short-cut")
    args = parser.parse_args()
    names = args.variants.split(",")
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"alphapulse_il_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        template = f"alphapulse_ab_tpl_{args.signals}"
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(False)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    engine = make_engine(url)
    try:
        config, rng = AppConfig(), random.Random(3)
        for round_ in range(args.rounds + 1):  # round 0 warms the pool and caches
            for variant in names:
                VARIANTS[variant]()
                ids = changes(url, 1000, rng, args.signals)
                wall, cpu = time.perf_counter(), time.process_time()
                sync_cycle.run_sync(engine, config, NOW, request=sync_cycle.SyncRequest(ids))
                if round_:
                    walls[variant].append(time.perf_counter() - wall)
                    cpus[variant].append(time.process_time() - cpu)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for variant in names:
        wall, cpu = walls[variant], cpus[variant]
        print(
            f"{variant:14s} wall median {statistics.median(wall):.3f} s (min {min(wall):.3f})"
            f"  python cpu median {statistics.median(cpu):.3f} s"
        )


if __name__ == "__main__":
    main()
