"""The demo's steps, on a fresh database:

1. migrate it (``.alphapulse/demo.db`` unless ``--url``);
2. import the bundled candles (the history the MTF heads warm up on);
3. run ``mtf_signal_job`` (``candles`` and the MTF assets) through Dagster, in process,
   as one single-run backfill over a week of each sample market (June 2017 for EURUSD,
   June 2019 for BTCUSD);
4. replay ``data/sample_webhooks.jsonl`` into the database through the webhook validation
   (before the sync, so the sync sees both halves);
5. run ``hybrid_sync_job`` (projection, tiers, gaps, health, with their checks);
6. print the health report.

The sample is historical, so "now" is the end of the replayed day (``DEMO_NOW``): the demo
passes it to the core's functions as an argument and to its Dagster runs as the
``alphapulse/now`` run tag. Nothing is written to the process environment.

The output fits on a screen: a progress bar over the steps, then a summary. Dagster's
per-event log lines are turned down to warnings for the demo's runs (``--verbose`` keeps
them).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tqdm import tqdm

from alphapulse_dagster.db.engine import database_url, make_engine, redacted
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.paths import bundled_dir, sample_webhooks_file
from alphapulse_dagster.sync.health import HealthReport, format_health, health_report
from demo.command import DEMO_URL

DEMO_NOW = datetime(2019, 6, 15, tzinfo=UTC)
# [start, end) of the MTF backfills: the week before each sample day, per market
MTF_WEEKS = (
    (datetime(2017, 6, 8, tzinfo=UTC), datetime(2017, 6, 15, tzinfo=UTC)),  # EURUSD
    (datetime(2019, 6, 8, tzinfo=UTC), datetime(2019, 6, 15, tzinfo=UTC)),  # BTCUSD
)
MTF_JOB = "mtf_signal_job"
STEPS = 4 + len(MTF_WEEKS)  # database, candles, MTF weeks, webhooks, sync


@dataclass
class DemoResult:
    report: HealthReport
    candles: int = 0  # rows in the candles table: imported history + the backfills' weeks
    mtf_signals: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)
    registry: Counter[str] = field(default_factory=Counter)  # signals by source
    seconds: dict[str, float] = field(default_factory=dict)  # per step

    def summary(self) -> str:
        webhooks = ", ".join(f"{n} {status}" for status, n in sorted(self.webhooks.items()))
        registry = ", ".join(f"{n} {source}" for source, n in sorted(self.registry.items()))
        return (
            f"candles stored: {self.candles:,}\n"
            f"MTF signals stored: {self.mtf_signals} (from {len(MTF_WEEKS)} one-week backfills)\n"
            f"webhooks replayed: {webhooks or 'none'}\n"
            f"signals in the registry: {registry or 'none'}"
        )


def _fresh_sqlite(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _replay_sample(engine: sa.Engine) -> Counter[str]:
    """The bundled webhook stream, straight into the log through the webhook validation."""
    from alphapulse_dagster.webhooks.ingest import ingest_body

    counts: Counter[str] = Counter()
    with engine.begin() as connection:
        for line in sample_webhooks_file().read_bytes().splitlines():
            if not line.strip():
                continue
            result = ingest_body(connection, line, now=DEMO_NOW, source_address="demo")
            if result.appended is None:
                counts["rejected"] += 1
            else:
                counts["duplicate" if result.appended.duplicate else "accepted"] += 1
    return counts


def _quiet_run_config(verbose: bool) -> dict[str, Any]:
    """Dagster's console logger at WARNING: no line per step, output or materialisation."""
    level = "DEBUG" if verbose else "WARNING"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def run_demo(url: str, progress: bool = False, verbose: bool = False) -> DemoResult:
    """Run the demo on ``url`` (a SQLite file there is recreated); see the module docstring.
    ``progress`` draws the step bar on stderr."""
    with warnings.catch_warnings():
        # the beta markers on observable sources / backfill policies, once per import
        warnings.simplefilter("ignore")
        import dagster as dg

        from assets import hybrid_sync, market_data, mtf_signals
        from assets.run_clock import NOW_TAG
        from resources import ConfigResource, DatabaseResource
        from resources.cache import SignalCacheResource
        from resources.market_data import MarketDataResource
        from sensors.hybrid_sync import SYNC_JOB_NAME
    from alphapulse_dagster.cli.candles import import_candles
    from alphapulse_dagster.config import load_config
    from alphapulse_dagster.db.tables import ai_signals_mtf, candles, signals

    timings: dict[str, float] = {}
    bar = tqdm(total=STEPS, desc="demo", unit="step", disable=not progress, leave=False)
    clock = time.perf_counter()

    def step_done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now
        bar.update(1)

    def step(name: str) -> None:
        bar.set_description(name)

    step("database")
    _fresh_sqlite(url)
    upgrade(url)
    step_done("database")

    step("candles")
    import_candles(bundled_dir("sample"), url, progress=False)
    step_done("candles")

    # the production jobs (``mtf_signal_job``, ``hybrid_sync_job``) on the demo's database
    defs = dg.Definitions.merge(
        market_data.defs,
        mtf_signals.defs,
        hybrid_sync.defs,
        dg.Definitions(
            resources={
                "database": DatabaseResource(url=url),
                "app_config": ConfigResource(),
                "market_data": MarketDataResource(),
                "signal_cache": SignalCacheResource(),  # the database alone: no Redis needed
            }
        ),
    )
    mtf_job, sync_job = defs.resolve_job_def(MTF_JOB), defs.resolve_job_def(SYNC_JOB_NAME)
    run_config = _quiet_run_config(verbose)
    partitions = mtf_job.partitions_def
    assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
    config = load_config()
    with dg.DagsterInstance.ephemeral() as instance:
        for start, end in MTF_WEEKS:
            step(f"MTF week of {start:%Y-%m-%d}")
            keys = partitions.get_partition_keys_in_time_window(dg.TimeWindow(start, end))
            run = mtf_job.execute_in_process(
                run_config=run_config,
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1],
                    NOW_TAG: DEMO_NOW.isoformat(),
                },
            )
            if not run.success:
                raise SystemExit(f"demo: MTF backfill {keys[0]}..{keys[-1]} failed")
            step_done(f"mtf {start:%Y}")

        step("webhooks")
        engine = make_engine(url)
        try:
            webhooks = _replay_sample(engine)
            step_done("webhooks")

            step("hybrid sync")
            run = sync_job.execute_in_process(
                run_config=run_config,
                instance=instance,
                tags={NOW_TAG: DEMO_NOW.isoformat()},
            )
            if not run.success:
                raise SystemExit("demo: hybrid sync failed")
            with engine.connect() as connection:
                report = health_report(connection, DEMO_NOW, config.hybrid_sync)
                mtf = connection.execute(
                    sa.select(sa.func.count()).select_from(ai_signals_mtf)
                ).scalar_one()
                stored_candles = connection.execute(
                    sa.select(sa.func.count()).select_from(candles)
                ).scalar_one()
                by_source = sa.select(signals.c.source, sa.func.count()).group_by(signals.c.source)
                registry = Counter({str(s): int(n) for s, n in connection.execute(by_source)})
            step_done("sync")
        finally:
            engine.dispose()
    bar.close()
    return DemoResult(
        report=report,
        candles=int(stored_candles),
        mtf_signals=int(mtf),
        webhooks=webhooks,
        registry=registry,
        seconds=timings,
    )


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    url = database_url(args.url or DEMO_URL)
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:  # migrations, "Redis not configured", …: the summary says what matters
        logging.getLogger().setLevel(logging.WARNING)
    print(f"AlphaPulse demo on {redacted(url)}, clock at {DEMO_NOW:%Y-%m-%d %H:%M} UTC")
    result = run_demo(url, progress=True, verbose=verbose)
    print(result.summary())
    print()
    print(format_health(result.report))
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s")
    return 0
