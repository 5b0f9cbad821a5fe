"""Benchmark: storing refined MTF signals (timed separately from generation).

Generates ~1,000 refined signals on the synthetic universe of ``bench_signals.py`` (the
permissive "stress" rule, so nearly every symbol signals), then times
``signal_store.store_signals`` — ai_signals_mtf + analysis history + SIGNAL_CREATED event
in one transaction per signal, de-duplication check first — into a fresh database:
the real Postgres (a scratch database, dropped afterwards) and SQLite (WAL), with and
without Redis. Median of ``--runs`` fresh databases.

Run:  PYTHONPATH=. .venv/bin/python bench/bench_signal_store.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_signals import synthetic_universe

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.market.resample import resample_ohlcv
from alphapulse_dagster.market.timeframes import duration
from alphapulse_dagster.signals.model_heads import ConsensusRule
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.signal_generation import generate_signals
from alphapulse_dagster.signals.signal_store import store_signals

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def refined_signals(n_symbols: int) -> list[dict]:
    hourly = synthetic_universe(n_symbols, 500)
    candles = {"1h": hourly, **{tf: resample_ohlcv(hourly, tf) for tf in ("4h", "1d")}}
    last_close = hourly["open_time"].max() + pd.Timedelta("1h")
    frame = generate_signals(
        candles,
        signal_timeframe="4h",
        entry_timeframe="1h",
        htf_timeframes=("1d",),
        start=last_close,
        end=last_close + pd.Timedelta("1s"),
        consensus_rule=ConsensusRule(
            min_agreeing_heads=1, min_mean_confidence=0.0, fire_on="every_bar"
        ),
    )
    frame["symbol"] = frame["symbol"].astype(str)
    return frame.to_dict("records")  # type: ignore[return-value]


def time_store(url: str, signals: list[dict], cache: SignalCache) -> float:
    upgrade(url)
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        stats = store_signals(engine, signals, cache, datetime.now(UTC), 4, duration)
        elapsed = time.perf_counter() - started
        assert stats.stored == len({(s["symbol"], s["direction"]) for s in signals})
        return elapsed
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    signals = refined_signals(args.symbols)
    print(f"{len(signals)} refined signals to store")
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    results: dict[str, list[float]] = {}
    for run in range(args.runs):
        for label, redis_url in (("no Redis", None), ("Redis", args.redis)):
            name = f"bench_store_{uuid.uuid4().hex[:8]}"
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
                cache = SignalCache(redis_url, namespace=f"bench:{name}:")
                results.setdefault(f"Postgres, {label}", []).append(time_store(url, signals, cache))
                cache.close()
            finally:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            results.setdefault("SQLite, no Redis", []).append(
                time_store(url, signals, SignalCache(None))
            )
        print(f"run {run + 1}/{args.runs} done")
    for label, times in results.items():
        median = statistics.median(times)
        print(f"{label:20s} {median:.3f} s  ({len(signals) / median:,.0f} signals/s)")


if __name__ == "__main__":
    main()
