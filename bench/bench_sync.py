"""Hybrid-sync benchmark on the real Postgres (SPEC §13).

Creates a scratch database (dropped afterwards), bulk-loads a synthetic event log with
COPY (not timed), then times, at two history sizes (10k signals / ~100k events and
100k signals / 1M events):

- the projection of the whole log into the registry (first catch-up, from cursor 0);
- a cold full sync (every signal; fills Tier 0/2/3 fields and opens gaps the first time);
- a warm full sync (every signal again, nothing new: reads everything, writes nothing);
- an incremental sync with 1,000 changed signals (new MFE_UPDATE / SIGNAL_CREATED events;
  the sensor's path: ``run_sync(signal_ids=…)``), repeated, median reported;
- the scheduled incremental sync (cursor + the signals whose inputs change with time).

Usage::

    python bench/bench_sync.py [--signals 100000] [--repeat 5]
    ALPHAPULSE_BENCH_PG_ADMIN_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.sync.projection import project_log
from alphapulse_dagster.sync.sync_cycle import run_sync

ADMIN_URL = os.environ.get(
    "ALPHAPULSE_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2025, 3, 1, tzinfo=UTC)
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


@contextmanager
def scratch_database() -> Iterator[str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"alphapulse_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


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


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


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
    config = AppConfig()
    rng = random.Random(7)
    results: dict[str, Any] = {}
    with scratch_database() as url:
        upgrade(url)
        engine = make_engine(url)
        loaded = 0
        for size in (args.small, args.signals):
            t_load, n = timed(lambda s=size: load(url, loaded_signals(results), s, rng))
            results["_loaded"] = size
            loaded += n
            print(f"[{size} signals] loaded {n} events (total {loaded}) in {t_load:.1f}s")
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
            t_proj, _ = timed(lambda: catch_up(engine))
            t_cold, rep = timed(lambda: run_sync(engine, config, NOW, full=True))
            t_warm, warm = timed(lambda: run_sync(engine, config, NOW, full=True))
            if args.no_vacuum:
                with engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
            else:
                vacuum(url)
            box = box_speed()
            incremental = []
            for _ in range(args.repeat):
                ids = changes(url, args.changed, rng, size)
                t_inc, inc = timed(lambda ids=ids: run_sync(engine, config, NOW, signal_ids=ids))
                incremental.append(t_inc)
            ids = changes(url, args.changed, rng, size)
            t_sched, sched = timed(lambda: run_sync(engine, config, NOW))
            results[size] = {
                "events": loaded,
                "projection_first_catch_up_s": round(t_proj, 2),
                "full_sync_cold_s": round(t_cold, 2),
                "cold_fields_changed": rep.reconcile.fields_changed,
                "full_sync_warm_s": round(t_warm, 2),
                "warm_fields_changed": warm.reconcile.fields_changed,
                "box_loop_s": round(box, 3),
                "incremental_1000_median_s": round(statistics.median(incremental), 3),
                "incremental_1000_runs_s": [round(t, 3) for t in incremental],
                "incremental_fields_changed_last": inc.reconcile.fields_changed,
                "scheduled_incremental_s": round(t_sched, 2),
                "scheduled_scope": sched.scope,
                "health_score": warm.health.health_score,
                "total_gaps": warm.health.total_gaps,
            }
            print(json.dumps({size: results[size]}, indent=2))
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


def catch_up(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        project_log(conn, NOW)


def loaded_signals(results: dict[str, Any]) -> int:
    return int(results.get("_loaded", 0))


if __name__ == "__main__":
    main()
