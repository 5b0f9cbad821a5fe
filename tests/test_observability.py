"""One structured (JSON) summary line per run: the Dagster sync run, ``alphapulse sync``
and the MTF run; the run-failure sensor logs a failed run with its id."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from alphapulse_dagster.cli import main as cli_main
from alphapulse_dagster.cli.candles import import_candles
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import make_engine
from assets import hybrid_sync
from assets.mtf_signals import mtf_pipeline
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource
from tests.hybrid_sync_support import append, created, entry

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "config")


def _summaries(instance: dg.DagsterInstance, run_id: str, event: str) -> list[dict[str, Any]]:
    lines = []
    for entry_ in instance.all_logs(run_id):
        message = entry_.user_message
        if message.startswith("{") and f'"event": "{event}"' in message:
            lines.append(json.loads(message))
    return lines


def test_dagster_sync_run_logs_one_json_summary(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    recent = utcnow() - timedelta(hours=1)
    append(engine, created("20250106_120000_LONG", recent), entry("20250106_120000_LONG", recent))
    engine.dispose()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [
                hybrid_sync.hybrid_sync_cycle,
            ],
            resources={
                "database": DatabaseResource(url=sqlite_url),
                "app_config": ConfigResource(config_dir=CONFIG_DIR),
            },
            instance=instance,
        )
        assert result.success
        (summary,) = _summaries(instance, result.run_id, "sync_run_summary")
    assert summary["run_id"] == result.run_id
    assert summary["signal_lifecycle"]["rows_inserted"] == 1
    assert summary["reconciled_signals"]["fields_changed"] > 0
    assert "open_gaps" in summary["gap_report"]
    assert summary["health"]["signals"] == 1 and 0 <= summary["health"]["health_score"] <= 100
    assert summary["seconds"] >= 0


def test_cli_sync_logs_one_json_summary(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ALPHAPULSE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ALPHAPULSE_CONFIG_DIR", CONFIG_DIR)
    with caplog.at_level(logging.INFO, logger="alphapulse_dagster.cli.sync"):
        assert cli_main(["sync"]) == 0
    lines = [json.loads(r.message) for r in caplog.records if r.message.startswith("{")]
    (summary,) = [line for line in lines if line.get("event") == "sync_run_summary"]
    assert {"seconds", "fields_changed", "gaps_opened", "health"} <= summary.keys()


def test_mtf_run_logs_one_json_summary(sqlite_url: str, sample_dir: Path) -> None:
    import_candles(sample_dir, sqlite_url, progress=False)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [mtf_pipeline],
            resources={
                "database": DatabaseResource(url=sqlite_url),
                "app_config": ConfigResource(config_dir=CONFIG_DIR),
                "signal_cache": SignalCacheResource(),
            },
            partition_key="2019-05-12",
            instance=instance,
        )
        assert result.success
        (summary,) = _summaries(instance, result.run_id, "mtf_run_summary")
    assert summary["window_start"].startswith("2019-05-12T00:00")
    assert summary["generated"] >= summary["stored"] >= 0
    assert summary["redis_configured"] is False
    assert summary["seconds"] >= summary["generate_seconds"] >= 0


def test_run_failure_sensor_logs_the_run_id(caplog: pytest.LogCaptureFixture) -> None:
    from sensors.operations import run_failure_logger

    @dg.op
    def boom() -> None:
        raise RuntimeError("exchange down")

    @dg.job
    def failing() -> None:
        boom()

    with dg.instance_for_test() as instance:
        result = failing.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_logger",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
        ).for_run_failure()
        with caplog.at_level(logging.ERROR, logger="alphapulse.runs"):
            run_failure_logger(context)
    (line,) = [json.loads(r.message) for r in caplog.records if r.name == "alphapulse.runs"]
    assert line["event"] == "run_failed" and line["run_id"] == result.run_id
