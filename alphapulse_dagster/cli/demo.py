"""``alphapulse demo`` (``make demo``): the whole desk, headless, on the bundled data.

1. a fresh demo database (``.alphapulse/demo.db`` unless ``--url``), migrated;
2. the bundled candles imported;
3. every asset materialised once through Dagster, in process: ``candles`` and the MTF
   assets as single-run backfills over one week of each sample market (June 2017 for
   EURUSD, June 2019 for BTCUSD), then the hybrid-sync assets;
4. ``data/sample_webhooks.jsonl`` replayed into the database through the webhook
   validation (before the sync, so the sync sees both halves);
5. the health report printed.

The sample data is historical, so the clock is frozen at the end of the replayed day
(``ALPHAPULSE_FROZEN_NOW``) for the whole demo.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alphapulse_dagster.db.engine import make_engine, redacted
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.paths import bundled_dir, sample_webhooks_file

DEMO_URL = "sqlite:///.alphapulse/demo.db"
DEMO_NOW = "2019-06-15T00:00:00+00:00"
MTF_RANGES = (
    ("2017-06-08-00:00", "2017-06-14-23:00"),  # EURUSD sample year
    ("2019-06-08-00:00", "2019-06-14-23:00"),  # BTCUSD, the day of the sample webhooks
)


def _fresh_sqlite(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_demo(url: str, config_dir: str | None = None) -> str:
    """Run the demo on ``url``; returns the printed health report."""
    config_dir = config_dir or str(bundled_dir("config"))
    with _environment(ALPHAPULSE_FROZEN_NOW=DEMO_NOW, ALPHAPULSE_CONFIG_DIR=config_dir):
        return _run_demo(url, config_dir)


def _run_demo(url: str, config_dir: str) -> str:
    import dagster as dg

    from alphapulse_dagster.cli.candles import import_candles
    from alphapulse_dagster.clock import utcnow
    from alphapulse_dagster.config import load_config
    from alphapulse_dagster.sync.health import format_health, health_report
    from alphapulse_dagster.webhooks.ingest import ingest_body
    from assets import hybrid_sync, market_data, mtf_signals
    from resources import ConfigResource, DatabaseResource
    from resources.cache import SignalCacheResource
    from resources.market_data import MarketDataResource

    _fresh_sqlite(url)
    upgrade(url)
    import_candles(bundled_dir("sample"), url, progress=False)
    resources = {
        "database": DatabaseResource(url=url),
        "app_config": ConfigResource(config_dir=config_dir),
        "market_data": MarketDataResource(),
        "signal_cache": SignalCacheResource(url=os.environ.get("ALPHAPULSE_REDIS_URL", "")),
    }
    partitioned = [market_data.candles, mtf_signals.mtf_pipeline, mtf_signals.mtf_metrics]
    with dg.DagsterInstance.ephemeral() as instance:
        for start, end in MTF_RANGES:
            result = dg.materialize(
                partitioned,
                resources=resources,
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": start,
                    "dagster/asset_partition_range_end": end,
                },
            )
            if not result.success:
                raise SystemExit(f"demo: MTF backfill {start}..{end} failed")
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                for line in sample_webhooks_file().read_bytes().splitlines():
                    if line.strip():
                        ingest_body(connection, line, now=utcnow(), source_address="demo")
            result = dg.materialize(
                [*hybrid_sync.SYNC_ASSETS, *hybrid_sync.SYNC_CHECKS],  # type: ignore[list-item]
                resources=resources,
                instance=instance,
            )
            if not result.success:
                raise SystemExit("demo: hybrid sync failed")
            with engine.connect() as connection:
                report = health_report(connection, utcnow(), load_config(config_dir).hybrid_sync)
        finally:
            engine.dispose()
    return format_health(report)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    url = args.url or DEMO_URL
    print(f"AlphaPulse demo on {redacted(url)} (clock frozen at {DEMO_NOW})")
    report = run_demo(url)
    print(report)
    print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="headless demo: sample candles -> MTF assets -> sample webhooks -> sync -> health",
    )
    parser.add_argument("--url", help=f"database URL (default {DEMO_URL}, recreated)")
    parser.set_defaults(handler=_run)
