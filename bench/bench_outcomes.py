"""Benchmark of the outcomes (SPEC §13, §17): 100,000 signals over a year of 1h candles.

Builds a database (Postgres by default) with ``--symbols`` random-walk instruments of a
year of 1h candles and ``--signals`` MTF signals spread over them (70 % refined limits
with three valid candidates each, 30 % market entries), then measures:

1. ``core``: the entry modes (actual, market, candidates) and their outcomes, in memory
   (``mtf_plan`` + ``evaluate_outcomes``);
2. ``signal_outcomes`` through Dagster (``dg.materialize``, the in-process executor a run
   worker uses), recorded to the production instance (``deploy/dagster.yaml`` on a scratch
   Postgres database, the README's environment; ``--instance ephemeral``: in memory),
   three ways:
   - ``full build``: the year as one run on an empty table, as of the last day's start
     (every signal new: read signals and candles, compute, contract, write 410,000 rows);
   - ``incremental day``: then the run the hourly schedule makes a day later (its window:
     the days that still have an open outcome, to the last day; a day of new candles):
     only open, new and just-decided signals are re-read, only changed rows written;
   - ``year re-run``: the year as one run again once everything is stored (settled
     signals skipped; the per-day metadata from the stored rows);
3. ``performance``: the strategy evaluation from the stored outcomes, as
   ``GET /analytics/strategies`` computes it (``strategy_report``, default grouping and
   ``entry_mode``), and the ``strategy_performance`` asset over the year.

    PYTHONPATH=. .venv/bin/python bench/bench_outcomes.py --build-only     # data, untimed
    flock /tmp/bench.lock env PYTHONPATH=. .venv/bin/python bench/bench_outcomes.py --skip-build
    ... bench_outcomes.py --skip-build --without-write   # a bound: the full build, no write

Targets: outcomes ≤ 5 s, strategy performance ≤ 2 s. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa

from alphapulse_dagster.analytics.entry_modes import mtf_plan
from alphapulse_dagster.analytics.outcome_store import mtf_signals
from alphapulse_dagster.analytics.outcomes import evaluate_outcomes
from alphapulse_dagster.analytics.strategy_performance import strategy_report
from alphapulse_dagster.db.bulk import insert_rows
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.db.tables import (
    ai_signals_mtf,
    candles,
    mtf_entry_analysis_history,
    signal_outcomes,
    strategy_performance,
)
from alphapulse_dagster.market.bar_series import BarSeries, to_ns
from alphapulse_dagster.market.candle_store import load_candles
from alphapulse_dagster.signals.trade_management import TradeRule
from assets import analytics
from assets.run_clock import NOW_TAG
from resources import ConfigResource, DatabaseResource

START = datetime(2023, 1, 1, tzinfo=UTC)
HOURS = 365 * 24
END = START + timedelta(hours=HOURS)
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/alphapulse_bench_outcomes"
RULE = TradeRule(entry_valid_bars=4, max_holding_bars=96)
CANDIDATES = ("FIBONACCI_618", "EMA_PULLBACK", "ORDER_BLOCK")
PATTERNS = {"FIBONACCI_618": "FIB_0.618_RETRACEMENT", "EMA_PULLBACK": "EMA_21_PULLBACK",
            "ORDER_BLOCK": "BULLISH_ORDER_BLOCK_TOP"}  # fmt: skip


def _walks(symbols: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    out = {}
    times = pd.date_range(START, periods=HOURS, freq="1h", tz="UTC")
    for k in range(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.008, HOURS)))
        open_ = np.r_[100.0, close[:-1]]
        wick = np.abs(rng.normal(0, 0.004, (2, HOURS))) * close
        out[f"SYM{k:03d}"] = pd.DataFrame({
            "open_time": times, "open": open_, "high": np.maximum(open_, close) + wick[0],
            "low": np.minimum(open_, close) - wick[1], "close": close, "volume": 1.0,
        })  # fmt: skip
    return out


def _signals(walks: dict[str, pd.DataFrame], n: int, rng: np.random.Generator) -> list[dict]:
    symbols = list(walks)
    rows = []
    per_symbol = n // len(symbols)
    for symbol in symbols:
        bars = walks[symbol]
        at = np.sort(rng.choice(np.arange(300, HOURS - 1), per_symbol, replace=False))
        for j in at.tolist():
            sign = 1 if rng.random() < 0.5 else -1
            market = float(bars["close"].iat[j])
            atr = market * 0.006
            refined = rng.random() < 0.7
            entry = market - sign * rng.uniform(0.2, 1.5) * atr if refined else market
            strategy = CANDIDATES[int(rng.integers(3))] if refined else "MARKET_ENTRY"
            ts = bars["open_time"].iat[j].to_pydatetime() + timedelta(hours=1)
            levels = [market - sign * d * atr for d in (0.4, 0.8, 1.2)]
            rows.append({
                "signal_id": str(uuid.uuid4()), "symbol": symbol,
                "direction": "LONG" if sign > 0 else "SHORT", "signal_timeframe": "4h",
                "entry_timeframe": "1h", "timestamp": ts, "signal_confidence": 0.7,
                "model_heads_analysis": {"heads": {}}, "market_price": market,
                "entry_price": entry, "stop_loss": entry - sign * 1.5 * atr,
                "take_profits": [entry + sign * m * atr for m in (2.0, 3.0, 5.0)],
                "targets_r": [2 / 1.5, 2.0, 5 / 1.5], "risk_reward_ratio": 2 / 1.5,
                "entry_strategy": strategy,
                "entry_pattern": PATTERNS.get(strategy, "NO_KEY_LEVEL"),
                "entry_confidence": 0.6, "atr": atr,
                "entry_improvement_bps": sign * (market - entry) / market * 1e4,
                "fallback_reason": None, "htf_alignment": {}, "htf_agreement": "ALIGNED",
                "status": "CLOSED", "expires_at": ts + timedelta(hours=4), "created_at": ts,
                "analysis": {"candidates": [
                    {"strategy": c, "pattern": PATTERNS[c], "level": lv, "valid": True}
                    for c, lv in zip(CANDIDATES, levels, strict=True)
                ]} if refined else {"candidates": []},
            })  # fmt: skip
    return rows


def build(url: str, symbols: int, n: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    rng = np.random.default_rng(17)
    walks = _walks(symbols, rng)
    signals = _signals(walks, n, rng)
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in (signal_outcomes, strategy_performance, mtf_entry_analysis_history,
                      ai_signals_mtf, candles):  # fmt: skip
            connection.execute(sa.delete(table))
        for symbol, frame in walks.items():
            insert_rows(connection, candles, [
                {"symbol": symbol, "timeframe": "1h", "open_time": t.to_pydatetime(), "open": o,
                 "high": h, "low": lo, "close": c, "volume": v}
                for t, o, h, lo, c, v in frame.itertuples(index=False, name=None)
            ])  # fmt: skip
        keep = set(ai_signals_mtf.c.keys())
        insert_rows(
            connection, ai_signals_mtf, [{k: v for k, v in s.items() if k in keep} for s in signals]
        )
        insert_rows(connection, mtf_entry_analysis_history, [
            {"signal_id": s["signal_id"], "symbol": s["symbol"], "direction": s["direction"],
             "signal_timeframe": "4h", "entry_timeframe": "1h", "timestamp": s["timestamp"],
             "entry_strategy": s["entry_strategy"], "entry_pattern": s["entry_pattern"],
             "analysis": s["analysis"], "created_at": s["timestamp"]}
            for s in signals
        ])  # fmt: skip
        if connection.dialect.name == "postgresql":  # the statistics autovacuum would keep
            connection.exec_driver_sql("ANALYZE")
    with engine.connect() as connection:
        frame = mtf_signals(connection, START, END)
    engine.dispose()
    return walks, frame


def _median(samples: list[float]) -> str:
    runs = ", ".join(f"{s:.2f}" for s in samples)
    return f"median {statistics.median(samples):.2f} s (runs: {runs})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/alphapulse_bench_outcomes"
    )
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--instance", choices=("prod", "ephemeral"), default="prod",
        help="the Dagster instance the runs record to (default: production, on Postgres)",
    )  # fmt: skip
    parser.add_argument("--build-only", action="store_true", help="build the data and stop")
    parser.add_argument("--skip-build", action="store_true", help="measure a built database")
    parser.add_argument(
        "--without-write", action="store_true",
        help="a bound, not the product: full builds only, with the write taken out "
        "(no row conversion, no ingest), to see what reading, computing and Dagster cost",
    )  # fmt: skip
    args = parser.parse_args()
    if args.skip_build:
        walks, frame = _read_back(args.url)
        _measure(args, walks, frame)
        return
    if args.url.startswith("postgresql"):
        admin = sa.create_engine(sa.engine.make_url(args.url).set(database="postgres"),
                                 isolation_level="AUTOCOMMIT")  # fmt: skip
        name = sa.engine.make_url(args.url).database
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
    t = time.perf_counter()
    walks, frame = build(args.url, args.symbols, args.signals)
    built = time.perf_counter() - t
    print(f"built {len(frame)} signals x {args.symbols} symbols x {HOURS} 1h bars in {built:.0f} s")
    if not args.build_only:
        _measure(args, walks, frame)


def _read_back(url: str) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The walks and signals of a database built before (``--build-only``), its schema
    brought up to date."""
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        frame = mtf_signals(connection, START, END)
        walks = {
            s: load_candles(connection, [s], "1h", START, END)
            for s in sorted(frame["symbol"].unique())
        }
    engine.dispose()
    return walks, frame


@contextmanager
def _instance(kind: str) -> Iterator[dg.DagsterInstance]:
    """``prod``: the shipped ``deploy/dagster.yaml`` on a scratch Postgres database, with
    the README's production environment (batched event writes, one planned event per run),
    as a run worker has it; ``ephemeral``: Dagster's in-memory instance."""
    if kind == "ephemeral":
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    from bench.bench_backfill import DAGSTER_PRODUCTION_ENV, PG_ADMIN_URL
    from tests.dagster_stack import prod_dagster_home, scratch_databases

    saved = dict(os.environ)
    with (
        tempfile.TemporaryDirectory() as home,
        scratch_databases(PG_ADMIN_URL, "bench_outcomes_dagster") as names,
    ):
        os.environ.update(prod_dagster_home(Path(home), PG_ADMIN_URL, names[0]))
        os.environ.update(DAGSTER_PRODUCTION_ENV)
        try:
            with dg.DagsterInstance.get() as instance:
                yield instance
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _measure(args: argparse.Namespace, walks: dict[str, pd.DataFrame], frame: pd.DataFrame) -> None:
    ohlc = ("open", "high", "low", "close")
    series = {
        s: BarSeries(to_ns(f["open_time"]), *(f[c].to_numpy() for c in ohlc), 3600 * 10**9)
        for s, f in walks.items()
    }

    def bars_for(symbol: str, timeframe: str, start: datetime) -> tuple[BarSeries, Any]:
        return series[symbol], None

    core = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        plan = mtf_plan(frame)
        outcomes = evaluate_outcomes(plan, bars_for, RULE, END)
        core.append(time.perf_counter() - t)
    counts = outcomes["status"].value_counts().to_dict()
    print(f"core: {len(outcomes)} outcome rows ({counts}): {_median(core)}")

    resources = {"database": DatabaseResource(url=args.url), "app_config": ConfigResource()}
    tags = {"dagster/asset_partition_range_start": START.strftime("%Y-%m-%d"),
            "dagster/asset_partition_range_end": (END - timedelta(days=1)).strftime("%Y-%m-%d"),
            NOW_TAG: END.isoformat()}  # fmt: skip
    runs: dict[str, list[float]] = {"full build": [], "incremental day": [], "year re-run": []}
    perf_asset = []
    engine = make_engine(args.url)
    day_before = END - timedelta(days=1)
    with _instance(args.instance) as instance:

        def run(label: str, first: datetime, now: datetime) -> None:
            run_tags = {**tags, "dagster/asset_partition_range_start": first.strftime("%Y-%m-%d"),
                        NOW_TAG: now.isoformat()}  # fmt: skip
            t = time.perf_counter()
            result = dg.materialize(
                [analytics.signal_outcomes_asset], resources=resources, instance=instance,
                tags=run_tags,
            )  # fmt: skip
            runs[label].append(time.perf_counter() - t)
            assert result.success
            step = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
            seconds = step[0].event_specific_data.duration_ms / 1000
            with engine.connect() as connection:
                stored = connection.execute(
                    sa.select(signal_outcomes.c.status, sa.func.count()).group_by(
                        signal_outcomes.c.status
                    )
                ).all()
            print(f"  {label} (from {first:%Y-%m-%d}): {runs[label][-1]:.2f} s wall, "
                  f"step {seconds:.2f} s; stored {dict(stored)}")  # fmt: skip

        def empty_table() -> None:  # untimed (TRUNCATE: a DELETE would leave 410,000 dead
            # rows per repeat for every later read)
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql("TRUNCATE signal_outcomes")
                else:
                    connection.execute(sa.delete(signal_outcomes))

        if args.without_write:  # the bound: every part "written" without touching the table
            analytics.replace_changed = lambda connection, part: len(part.rows_to_write)  # type: ignore[assignment]
            for _ in range(args.repeat):
                empty_table()
                run("full build", START, day_before)
            print(
                f"signal_outcomes asset, full build WITHOUT WRITING: {_median(runs['full build'])}"
            )
            return
        for _ in range(args.repeat):
            empty_table()
            run("full build", START, day_before)
            first = analytics.open_days_start(DatabaseResource(url=args.url), END)
            run("incremental day", first, END)
            run("year re-run", START, END)
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = dg.materialize(
                [analytics.strategy_performance_asset],
                resources=resources,
                instance=instance,
                tags=tags,
            )
            perf_asset.append(time.perf_counter() - t)
            assert result.success
    for label, samples in runs.items():
        print(f"signal_outcomes asset, {label} ({len(frame)} signals in the year): "
              f"{_median(samples)}")  # fmt: skip
    report = []
    for group_by in ("entry_strategy", "entry_mode"):
        samples = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            with engine.connect() as connection:
                body = strategy_report(connection, group_by=group_by)
            samples.append(time.perf_counter() - t)
        report.append(samples)
        closed = sum(g["n"] for g in body["groups"])
        print(f"strategy_report group_by={group_by} ({closed} closed trades): {_median(samples)}")
    print(f"strategy_performance asset (one run, 365 days): {_median(perf_asset)}")
    engine.dispose()


if __name__ == "__main__":
    main()
