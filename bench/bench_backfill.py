"""Benchmark: a backfill through Dagster, beside the core-only time for the same range.

What a user runs (the UI's path, one single-run backfill over daily partitions):

    dagster asset materialize -m alphapulse_dagster.definitions \\
        --select candles,raw_signals,mtf_entries,stored_signals,mtf_metrics \\
        --partition-range FIRST...LAST

on a fresh Dagster instance and a fresh, migrated app database; candles come from the CSV
folder through the ``candles`` asset. Timed: the wall time of that command, process start
included. Two stacks:

  * ``--stack prod`` (the production path): the shipped ``deploy/dagster.yaml`` (instance
    storage on Postgres) with ``DAGSTER_EVENT_BATCH_SIZE`` and
    ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`` set as the README's production
    notes say, and the app database on Postgres; fresh scratch databases on the local
    server (``ALPHAPULSE_TEST_PG_ADMIN_URL``, default postgres@127.0.0.1:5432).
  * ``--stack dev``: ``make dev``'s instance (``deploy/dagster.dev.yaml``, SQLite storage
    under DAGSTER_HOME) and a SQLite app database. Dagster's SQLite event storage writes
    each materialisation with two commits and has no batch write, so a backfill of many
    partitions costs ~25-80 ms per partition and asset here.

Core-only: the same steps without Dagster, in this process, on another fresh database —
refresh the candles of the range (``fetch_window`` + ``derive_and_store``), generate the
signals (``generate_window``), store them (``record_window``) and compute each day's
MTF metrics. The ratio Dagster / core is the orchestration overhead (process start and
definitions load included). CPU seconds are reported beside the wall times: on a box
shared with other work, the wall time includes waiting for a core, the CPU time does not
(the Dagster figure is the subprocess's user + system time, Postgres's own work excluded).

Scenarios:
  * ``sample``: the bundled universe (BTCUSD, EURUSD 1h), 2017-07-01...2019-06-30
    (730 daily partitions, two years);
  * ``synthetic``: 100 SYNTHETIC symbols x 1 year of 1h bars (each a window of the real
    BTCUSD sample at a different offset, scaled, re-stamped onto 2024), 2024-01-01...
    2024-12-30 (365 partitions).

Run:  flock /tmp/bench.lock env PYTHONPATH=. /work/main/.venv/bin/python \\
          bench/bench_backfill.py --stack prod --scenario sample --scenario synthetic

``--core-only`` skips the Dagster run and times the core path alone (for work on the core).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alphapulse_dagster.config import load_config  # noqa: E402
from alphapulse_dagster.db.engine import make_engine  # noqa: E402
from alphapulse_dagster.db.migrate import upgrade  # noqa: E402
from alphapulse_dagster.db.tables import ai_signals_mtf, candles  # noqa: E402
from alphapulse_dagster.market.candle_refresh import derive_and_store, fetch_window  # noqa: E402
from alphapulse_dagster.market.market_data import CsvMarketData  # noqa: E402
from alphapulse_dagster.signals.mtf_metrics import mtf_metrics_by_day  # noqa: E402
from alphapulse_dagster.signals.mtf_run import (  # noqa: E402
    generate_window,
    record_window,
    trade_rule,
)
from alphapulse_dagster.signals.signal_cache import SignalCache  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# README, production environment: a backfill's materialisations in one write each batch of
# 1,000, and one "planned" event per asset per run instead of one per asset and day
DAGSTER_PRODUCTION_ENV = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}
SELECTION = "candles,raw_signals,mtf_entries,stored_signals,mtf_metrics"
SCENARIOS = {
    "sample": ("2017-07-01", "2019-06-30"),
    "synthetic": ("2024-01-01", "2024-12-30"),
}


def synthetic_market(folder: Path, config_dir: Path, n_symbols: int = 100) -> None:
    """``n_symbols`` SYNTHETIC 1h CSVs for 2024 and a config listing them (4h signals)."""
    src = pd.read_csv(SAMPLE / "BTCUSD_1h.csv")
    ohlcv = src[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    n_bars = 366 * 24
    clock = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    stamps = clock.strftime("%Y-%m-%dT%H:%M:%SZ")
    span = len(src) - n_bars
    folder.mkdir(parents=True)
    lines = ["symbols:"]
    for i in range(n_symbols):
        start = (i * 7919) % span
        block = ohlcv[start : start + n_bars].copy()
        block[:, :4] *= 0.5 + (i % 97) / 48.0
        frame = pd.DataFrame(block, columns=["open", "high", "low", "close", "volume"])
        frame.insert(0, "open_time", stamps)
        symbol = f"SYN{i:03d}"
        frame.to_csv(folder / f"{symbol}_1h.csv", index=False)
        lines.append(f"  - {{symbol: {symbol}, exchange: csv, signal_timeframe: 4h}}")
    config_dir.mkdir(parents=True)
    (config_dir / "symbol_config.yaml").write_text("\n".join(lines) + "\n")
    shutil.copy(ROOT / "config" / "mtf_config.yaml", config_dir / "mtf_config.yaml")


def _signals(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        n = connection.execute(sa.select(sa.func.count()).select_from(ai_signals_mtf)).scalar()
        bars = connection.execute(sa.select(sa.func.count()).select_from(candles)).scalar()
    engine.dispose()
    return int(n or 0), int(bars or 0)


def through_dagster(
    env: dict[str, str], first: str, last: str, url: str, instance_env: dict
) -> dict:
    upgrade(url)
    run_env = {**os.environ, **env, **instance_env, "ALPHAPULSE_DATABASE_URL": url}
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "alphapulse_dagster.definitions",
        "--select",
        SELECTION,
        "--partition-range",
        f"{first}...{last}",
    ]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=run_env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"dagster asset materialize failed ({done.returncode})")
    signals, bars = _signals(url)
    print(f"dagster: {seconds:.1f} s wall, {cpu:.1f} s CPU, {signals} signals", file=sys.stderr)
    return {
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "signals": signals,
        "candle_rows": bars,
    }


def core_only(env: dict[str, str], first: str, last: str, url: str) -> dict:
    upgrade(url)
    config = load_config(env.get("ALPHAPULSE_CONFIG_DIR") or ROOT / "config")
    source = CsvMarketData(env.get("ALPHAPULSE_MARKET_DATA_DIR") or SAMPLE)
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    end = datetime.fromisoformat(last).replace(tzinfo=UTC) + timedelta(days=1)
    engine = make_engine(url)
    cpu_started = time.process_time()
    started = time.perf_counter()
    fine, needed = fetch_window(lambda exchange: source, config, start, end)
    derive_and_store(engine, fine, needed, start, end)
    candles_at = time.perf_counter()
    signals = generate_window(engine, config, start, end)
    generated_at = time.perf_counter()
    record_window(engine, SignalCache(None), signals, end, trade_rule(config), end)
    stored_at = time.perf_counter()
    with engine.connect() as connection:
        mtf_metrics_by_day(connection, end, start, end)
    done = time.perf_counter()
    cpu = time.process_time() - cpu_started
    engine.dispose()
    signals_stored, bars = _signals(url)
    return {
        "seconds": round(done - started, 2),
        "cpu_s": round(cpu, 2),
        "candles_s": round(candles_at - started, 2),
        "generate_s": round(generated_at - candles_at, 2),
        "store_s": round(stored_at - generated_at, 2),
        "metrics_s": round(done - stored_at, 2),
        "signals": signals_stored,
        "candle_rows": bars,
    }


def run(scenario: str, stack: str, core_alone: bool = False) -> dict:
    first, last = SCENARIOS[scenario]
    work = Path(tempfile.mkdtemp(prefix=f"bench_backfill_{scenario}_"))
    try:
        env = {
            "ALPHAPULSE_REDIS_URL": "",
            "ALPHAPULSE_CONFIG_DIR": "",
            "ALPHAPULSE_MARKET_DATA_DIR": "",
        }
        if scenario == "synthetic":
            synthetic_market(work / "market", work / "config")
            env["ALPHAPULSE_MARKET_DATA_DIR"] = str(work / "market")
            env["ALPHAPULSE_CONFIG_DIR"] = str(work / "config")
        if stack == "dev":
            home = work / "dagster_home"
            home.mkdir()
            shutil.copy(ROOT / "deploy" / "dagster.dev.yaml", home / "dagster.yaml")
            instance_env = {
                "DAGSTER_HOME": str(home),
                # as `make dev` exports it (SQLite has no batch write; this one still counts)
                "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
            }
            app_url = f"sqlite:///{work / 'dagster.db'}"
            if not core_alone:
                dagster = through_dagster(env, first, last, app_url, instance_env)
            core = core_only(env, first, last, f"sqlite:///{work / 'core.db'}")
        else:
            from tests.dagster_stack import database_url, prod_dagster_home, scratch_databases

            admin = os.environ.get("ALPHAPULSE_TEST_PG_ADMIN_URL", PG_ADMIN_URL)
            with scratch_databases(admin, "bench_instance", "bench_app", "bench_core") as names:
                instance_env = prod_dagster_home(work / "dagster_home", admin, names[0])
                instance_env.update(DAGSTER_PRODUCTION_ENV)
                app_url = database_url(admin, names[1])
                if not core_alone:
                    dagster = through_dagster(env, first, last, app_url, instance_env)
                core = core_only(env, first, last, database_url(admin, names[2]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    days = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).days + 1
    if core_alone:
        return {"stack": stack, "scenario": scenario, "range": f"{first}...{last}", "core": core}
    return {
        "stack": stack,
        "scenario": scenario,
        "range": f"{first}...{last}",
        "partitions": days,
        "dagster": dagster,
        "core": core,
        "overhead_ratio": round(dagster["seconds"] / core["seconds"], 2),
        "same_signals": dagster["signals"] == core["signals"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--stack", choices=("prod", "dev"), default="prod")
    parser.add_argument(
        "--core-only",
        action="store_true",
        help="time only the core path (no Dagster run): for work on the core itself",
    )
    args = parser.parse_args()
    for scenario in args.scenario or ["sample"]:
        print(json.dumps(run(scenario, args.stack, args.core_only)), flush=True)


if __name__ == "__main__":
    main()
