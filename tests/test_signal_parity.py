"""Live/backfill parity: hourly runs of the schedule and one backfill over the same range
store exactly the same signals, in every pinned column of ``ai_signals_mtf``; and the
``signal_parity`` check reproduces a day's stored signals from the stored candles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from alphapulse_dagster.cli.candles import import_candles
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.db.tables import ai_signals_mtf, mtf_entry_analysis_history, signal_events
from alphapulse_dagster.signals.mtf_run import TimeframePlan, warmup_anchor, warmup_blocks
from alphapulse_dagster.signals.signal_parity import signal_parity
from assets.market_data import candles
from assets.mtf_signals import (
    SIGNAL_PARITY,
    mtf_metrics,
    mtf_pipeline,
    signal_parity_check,
)
from assets.partitions import daily_partitions
from assets.run_clock import NOW_TAG
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource
from resources.market_data import MarketDataResource
from sensors.mtf_signals import live_run_request

CONFIG_DIR = Path(__file__).parents[1] / "config"
# every pinned column of ai_signals_mtf except created_at (the wall-clock write time)
PINNED = [
    "signal_id", "symbol", "direction", "signal_timeframe", "entry_timeframe", "timestamp",
    "signal_confidence", "model_heads_analysis", "market_price", "entry_price", "stop_loss",
    "take_profits", "risk_reward_ratio", "entry_strategy", "entry_pattern", "entry_confidence",
    "atr", "htf_alignment", "status", "expires_at",
]  # fmt: skip
MTF_ONLY = ["raw_signals", "mtf_entries", "stored_signals", "mtf_metrics"]
FIRST_DAY, LAST_DAY = "2019-05-01", "2019-05-15"  # 15 days of BTCUSD (4h signals)


def resources(url: str, sample_dir: Path) -> dict:
    return {
        "database": DatabaseResource(url=url),
        "app_config": ConfigResource(config_dir=str(CONFIG_DIR)),
        "market_data": MarketDataResource(csv_dir=str(sample_dir)),
        "signal_cache": SignalCacheResource(),
    }


def pinned_rows(url: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(*(ai_signals_mtf.c[c] for c in PINNED)).order_by(
                ai_signals_mtf.c.timestamp, ai_signals_mtf.c.symbol, ai_signals_mtf.c.direction
            )
        ).all()
        analyses = connection.execute(
            sa.select(sa.func.count()).select_from(mtf_entry_analysis_history)
        ).scalar_one()
        events = connection.execute(
            sa.select(signal_events.c.event_type, sa.func.count()).group_by(
                signal_events.c.event_type
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows] + [("analyses", analyses), *sorted(tuple(e) for e in events)]


@pytest.fixture
def two_databases(sqlite_url: str, sample_dir: Path, tmp_path: Path) -> tuple[str, str]:
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(live_url)
    for url in (sqlite_url, live_url):
        import_candles(sample_dir, url, progress=False)
    return sqlite_url, live_url


def test_hourly_runs_store_exactly_what_one_backfill_stores(
    two_databases: tuple[str, str], sample_dir: Path
) -> None:
    backfill_url, live_url = two_databases
    result = dg.materialize(
        [candles, mtf_pipeline, mtf_metrics],
        selection=MTF_ONLY,
        resources=resources(backfill_url, sample_dir),
        tags={
            "dagster/asset_partition_range_start": FIRST_DAY,
            "dagster/asset_partition_range_end": LAST_DAY,
        },
    )
    assert result.success

    # the schedule's runs, each with the clock at its minute. The schedule fires every
    # hour; with 4h signal bars the runs that can store a signal are those a minute after
    # a 4h close (00:01 also completes yesterday), and lifecycle changes are evaluated as
    # of each run's time, so the runs in between change when, not what, is written. Every
    # fourth hour keeps this test at ~90 runs instead of 360.
    # candles are imported in both databases; the live candle refresh has its own tests
    job = dg.Definitions(
        assets=[candles, mtf_pipeline, mtf_metrics],
        jobs=[dg.define_asset_job("live_mtf", selection=MTF_ONLY, partitions_def=daily_partitions)],
        resources=resources(live_url, sample_dir),
    ).resolve_job_def("live_mtf")
    instance = dg.DagsterInstance.ephemeral()
    hour = datetime(2019, 5, 1, 4, tzinfo=UTC)
    runs = 0
    while hour <= datetime(2019, 5, 16, tzinfo=UTC):
        scheduled = hour + timedelta(minutes=1)
        request = live_run_request(scheduled)
        run = job.execute_in_process(
            partition_key=request.partition_key,
            tags={**request.tags, NOW_TAG: scheduled.isoformat()},
            instance=instance,
        )
        assert run.success
        runs += 1
        hour += timedelta(hours=4)
    assert runs == 15 * 6

    live, backfilled = pinned_rows(live_url), pinned_rows(backfill_url)
    signals = [r for r in backfilled if r[0] not in ("analyses",) and len(r) == len(PINNED)]
    assert len(signals) >= 10  # a real comparison, not of two empty tables
    assert live == backfilled


def test_warmup_anchor_is_a_fixed_boundary_one_to_two_blocks_back() -> None:
    plan = TimeframePlan("4h", "1h", ("1d",))
    # max(300 x 4h = 50 d, 500 x 1h = 20.8 d, 100 x 1d = 100 d) = 100 days
    assert plan.warmup_block() == timedelta(days=100)
    block = plan.warmup_block()
    t = datetime(2019, 5, 12, 8, tzinfo=UTC)
    anchor = warmup_anchor(t, block)
    # 2019-05-12 08:00 is day 18028.33 since the epoch; 18028.33 - 100 = 17928.33 -> 17900
    assert anchor == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=17900)
    assert block <= t - anchor < 2 * block
    # every hour of the same block has the same anchor, whatever window it is run in
    assert warmup_anchor(datetime(2019, 5, 11, tzinfo=UTC), block) == anchor
    pieces = warmup_blocks(
        datetime(2019, 1, 1, tzinfo=UTC), datetime(2019, 12, 1, tzinfo=UTC), block
    )
    assert [p[1] for p in pieces][1:] == [a + 2 * block for a, _, _ in pieces][:-1]
    assert all(warmup_anchor(p[1], block) == p[0] for p in pieces)
    assert all(warmup_anchor(p[2] - timedelta(microseconds=1), block) == p[0] for p in pieces)


def test_signal_parity_reproduces_stored_signals_and_names_a_tampered_one(
    sqlite_url: str, sample_dir: Path
) -> None:
    import_candles(sample_dir, sqlite_url, progress=False)
    assert dg.materialize(
        [mtf_pipeline, mtf_metrics],
        selection=["raw_signals", "mtf_entries", "stored_signals", "mtf_metrics"],
        resources=resources(sqlite_url, sample_dir),
        partition_key="2019-05-12",
    ).success
    config = load_config(CONFIG_DIR)
    engine = make_engine(sqlite_url)
    day = (datetime(2019, 5, 12, tzinfo=UTC), datetime(2019, 5, 13, tzinfo=UTC))
    report = signal_parity(engine, config, *day)
    assert report.stored >= 1 and report.share == 1.0 and not report.misses
    # the check, on "yesterday" = 2019-05-12
    morning = {NOW_TAG: "2019-05-13T00:31:00+00:00"}
    check = dg.materialize(
        [mtf_pipeline, signal_parity_check],
        selection=dg.AssetSelection.checks(signal_parity_check),
        resources=resources(sqlite_url, sample_dir),
        tags=morning,
    ).get_asset_check_evaluations()[0]
    assert check.check_name == SIGNAL_PARITY and check.passed
    assert check.metadata["share_reproduced"].value == 1.0
    # a stored confidence one ulp off is a miss, named with its column
    with engine.begin() as connection:
        victim, confidence = connection.execute(
            sa.select(ai_signals_mtf.c.signal_id, ai_signals_mtf.c.signal_confidence)
            .where(ai_signals_mtf.c.timestamp >= day[0], ai_signals_mtf.c.timestamp < day[1])
            .limit(1)
        ).one()
        connection.execute(
            sa.update(ai_signals_mtf)
            .where(ai_signals_mtf.c.signal_id == victim)
            .values(signal_confidence=float(__import__("numpy").nextafter(confidence, 2.0)))
        )
    engine.dispose()
    check = dg.materialize(
        [mtf_pipeline, signal_parity_check],
        selection=dg.AssetSelection.checks(signal_parity_check),
        resources=resources(sqlite_url, sample_dir),
        tags=morning,
    ).get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["misses"].value == {victim: "differs in signal_confidence"}
    assert check.metadata["share_reproduced"].value == (report.stored - 1) / report.stored
