"""The MTF assets on Dagster: a single-run backfill over a range of the bundled sample,
its counts, its idempotency, and equality with the live (hour-by-hour) history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from alphapulse_dagster.cli.candles import import_candles
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import ai_signals_mtf, mtf_entry_analysis_history, signal_events
from alphapulse_dagster.definitions import defs
from alphapulse_dagster.signals.mtf_run import generate_window
from assets.mtf_signals import ENTRY_DATA_SUFFICIENCY, ENTRY_INVARIANTS, mtf_metrics, mtf_pipeline
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource

CONFIG_DIR = Path(__file__).parents[1] / "config"
SELECTION = ["raw_signals", "mtf_entries", "stored_signals", "mtf_metrics"]


def resources(url: str) -> dict:
    return {
        "database": DatabaseResource(url=url),
        "app_config": ConfigResource(config_dir=str(CONFIG_DIR)),
        "signal_cache": SignalCacheResource(),
    }


def backfill(url: str, start: str, end: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [mtf_pipeline, mtf_metrics],
        selection=SELECTION,
        resources=resources(url),
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
    )


def stored(url: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                ai_signals_mtf.c.signal_id,
                ai_signals_mtf.c.symbol,
                ai_signals_mtf.c.direction,
                ai_signals_mtf.c.timestamp,
                ai_signals_mtf.c.entry_price,
                ai_signals_mtf.c.status,
                ai_signals_mtf.c.status_reason,
            ).order_by(ai_signals_mtf.c.timestamp, ai_signals_mtf.c.symbol)
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def count(url: str, table: sa.Table) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        value = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return int(value)


@pytest.fixture
def sample_db(db_url: str, sample_dir: Path) -> str:
    import_candles(sample_dir, db_url, progress=False)
    return db_url


def test_backfill_range_then_again_stores_nothing_new(sample_db: str) -> None:
    result = backfill(sample_db, "2019-05-01", "2019-05-14")
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks[ENTRY_INVARIANTS].passed and checks[ENTRY_DATA_SUFFICIENCY].passed
    generated = checks[ENTRY_INVARIANTS].metadata["rows_checked"].value
    # the pure generator, outside Dagster, sees the same 14 signals in the window
    engine = make_engine(sample_db)
    window = generate_window(
        engine,
        load_config(CONFIG_DIR),
        datetime(2019, 5, 1, tzinfo=UTC),
        datetime(2019, 5, 15, tzinfo=UTC),
    )
    engine.dispose()
    assert generated == len(window) == 14
    assert window["entry_strategy"].value_counts().to_dict() == {
        "ORDER_BLOCK": 11,
        "EMA_PULLBACK": 2,
        "MARKET_ENTRY": 1,
    }
    signals = stored(sample_db)
    analyses = count(sample_db, mtf_entry_analysis_history)
    # every generated signal is either stored or skipped as an active duplicate, and every
    # analysis is kept either way; each stored signal has its SIGNAL_CREATED event
    assert analyses == generated
    engine = make_engine(sample_db)
    with engine.connect() as connection:
        skipped = connection.execute(
            sa.select(sa.func.count())
            .select_from(mtf_entry_analysis_history)
            .where(mtf_entry_analysis_history.c.signal_id.is_(None))
        ).scalar_one()
    engine.dispose()
    assert len(signals) + skipped == 14 and len(signals) > 0
    events = count(sample_db, signal_events)
    assert events >= len(signals)
    # only BTCUSD has data in May 2019 (the EURUSD sample is 2017)
    assert {s[1] for s in signals} == {"BTCUSD"}
    # a second backfill of the same range writes nothing new
    again = backfill(sample_db, "2019-05-01", "2019-05-14")
    assert again.success
    assert stored(sample_db) == signals
    assert count(sample_db, signal_events) == events
    assert count(sample_db, mtf_entry_analysis_history) == analyses
    last = again.get_asset_materialization_events()
    stored_meta = [
        m.materialization.metadata for m in last if m.asset_key.to_user_string() == "stored_signals"
    ][-1]
    assert stored_meta["stored"].value == 0


def test_job_and_schedule_are_defined() -> None:
    job = defs.resolve_job_def("mtf_signal_job")
    assert job.tags["alphapulse/mtf"] == "true"
    schedule = defs.resolve_schedule_def("mtf_signal_schedule")
    assert schedule.cron_schedule == "1 * * * *"
    assert schedule.job_name == "mtf_signal_job"
    assert defs.resolve_schedule_def("signal_parity_schedule").job_name == "signal_parity_job"


def test_mtf_metrics_by_day_equal_each_day_on_its_own(sample_db: str) -> None:
    from alphapulse_dagster.signals.mtf_metrics import mtf_metrics, mtf_metrics_by_day

    assert backfill(sample_db, "2019-05-01", "2019-05-14").success
    engine = make_engine(sample_db)
    start, end = datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 15, tzinfo=UTC)
    with engine.connect() as connection:
        by_day = mtf_metrics_by_day(connection, end, start, end)
        whole = mtf_metrics(connection, end)
        for day, figures in by_day.items():
            day_from = datetime.fromisoformat(day).replace(tzinfo=UTC)
            one = mtf_metrics(connection, end, (day_from, day_from + timedelta(days=1)))
            assert figures == {**one, "signals_last_24h": one["total_signals"]}
    engine.dispose()
    # every stored signal of the window is on exactly one day
    assert sum(f["total_signals"] for f in by_day.values()) == whole["total_signals"] > 0
