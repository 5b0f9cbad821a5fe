"""Dagster layer of the hybrid sync: materialize on both backends, checks, sensor, schedule."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from hybrid_sync_support import T0, append, created, entry, event

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_health_metrics, signals
from assets import hybrid_sync
from resources import ConfigResource, DatabaseResource
from sensors.hybrid_sync import (
    SCOPED_ASSETS,
    SYNC_ASSETS,
    hybrid_sync_schedule,
    signal_created_sensor,
)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "config")
H = timedelta(hours=1)


def _resources(url: str) -> dict[str, object]:
    return {
        "database": DatabaseResource(url=url),
        "app_config": ConfigResource(config_dir=CONFIG_DIR),
    }


def _seed(url: str) -> None:
    engine = make_engine(url)
    try:
        append(
            engine,
            created("20250106_120000_LONG", T0),
            entry("20250106_120000_LONG", T0 + H),
            entry("20250106_130000_SHORT", T0 + H, direction="SHORT", stop_loss=104.0),
            event("MFE_UPDATE", "20250106_130000_SHORT", T0 + 2 * H, mfe=0.5, mae=0.1),
        )
    finally:
        engine.dispose()


def test_definitions_load_and_wire_the_job() -> None:
    defs = dg.Definitions.merge(hybrid_sync.defs, dg.Definitions(resources=_resources("sqlite://")))
    job = defs.resolve_job_def("hybrid_sync_job")
    assert job.executor_def.name == "in_process"
    assert job.tags.get("alphapulse/sync") == "true"
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys >= {"signal_events", *SYNC_ASSETS}
    dg.Definitions.validate_loadable(defs)


def test_materialize_sync_assets(db_url: str) -> None:
    _seed(db_url)
    selection = [
        hybrid_sync.signal_events_source,
        hybrid_sync.signal_lifecycle,
        hybrid_sync.reconciled_signals,
        hybrid_sync.gap_report,
        hybrid_sync.signal_health,
        hybrid_sync.gap_report_contract,
        hybrid_sync.health_thresholds,
        hybrid_sync.reconciliation_monotonicity,
    ]
    result = dg.materialize(selection, resources=_resources(db_url))
    assert result.success
    (lifecycle,) = result.asset_materializations_for_node("signal_lifecycle")
    assert lifecycle.metadata["rows_inserted"].value == 2
    (reconciled,) = result.asset_materializations_for_node("reconciled_signals")
    assert reconciled.metadata["fields_changed"].value > 0
    (gaps,) = result.asset_materializations_for_node("gap_report")
    assert gaps.metadata["gaps_no_signal_created"].value == 1
    assert gaps.metadata["open_gaps"].value >= 1
    (health,) = result.asset_materializations_for_node("signal_health")
    assert 0 <= health.metadata["health_score"].value <= 100
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["gap_report_contract"].passed
    assert checks["reconciliation_monotonicity"].passed
    assert checks["health_thresholds"].severity == dg.AssetCheckSeverity.WARN
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(signals)).scalar() == 2
            run_ids = conn.execute(sa.select(signal_health_metrics.c.sync_run_id)).scalars().all()
        assert run_ids == [result.run_id]
    finally:
        engine.dispose()
    # a second run with nothing new changes nothing
    again = dg.materialize(selection, resources=_resources(db_url))
    (reconciled,) = again.asset_materializations_for_node("reconciled_signals")
    assert reconciled.metadata["fields_changed"].value == 0


def test_monotonicity_check_fails_when_a_confidence_went_down(sqlite_url: str) -> None:
    from alphapulse_dagster.db.tables import sync_audit_log

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(sync_audit_log).values(
                sync_run_id="bad-run",
                signal_id="s",
                field="targets",
                old_value=None,
                new_value=[1.0],
                tier="2",
                confidence=0.8,
                old_confidence=1.0,
                reason="test",
                action_timestamp=T0,
            )
        )
    engine.dispose()
    database = DatabaseResource(url=sqlite_url)
    assert hybrid_sync.confidence_decreases(database, "bad-run") == (1, [("s", "targets")])
    assert hybrid_sync.confidence_decreases(database, "other-run") == (0, [])


def test_sensor_one_run_per_tick_with_cursor_and_cap(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    append(engine, *[created(f"20250106_12{n:02d}00_LONG", T0) for n in range(5)])
    append(engine, entry("20250106_120000_LONG", T0 + H))  # not a SIGNAL_CREATED
    engine.dispose()
    resources = _resources(sqlite_url)
    instance = dg.DagsterInstance.ephemeral()

    empty = dg.build_sensor_context(
        instance=instance, cursor=json.dumps({"last_event_id": 99}), resources=resources
    )
    assert signal_created_sensor.evaluate_tick(empty).run_requests == []

    context = dg.build_sensor_context(instance=instance, resources=resources)
    data = signal_created_sensor.evaluate_tick(context)
    (request,) = data.run_requests
    assert request.run_key == "signal_created:1-5"
    assert request.tags["alphapulse/sync"] == "true"
    ids = request.run_config["ops"]["reconciled_signals"]["config"]["signal_ids"]
    assert len(ids) == 5 and all(i.startswith("BTCUSDT:20250106_12") for i in ids)
    assert set(request.run_config["ops"]) == set(SCOPED_ASSETS)
    assert json.loads(data.cursor) == {"last_event_id": 5}

    # past the cursor: nothing new => no run
    after = dg.build_sensor_context(instance=instance, cursor=data.cursor, resources=resources)
    assert signal_created_sensor.evaluate_tick(after).run_requests == []


def test_sensor_caps_the_batch(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "mtf_config.yaml").write_text("hybrid_sync:\n  sensor_batch_limit: 2\n")
    engine = make_engine(sqlite_url)
    append(engine, *[created(f"20250106_12{n:02d}00_LONG", T0) for n in range(5)])
    engine.dispose()
    resources = {
        "database": DatabaseResource(url=sqlite_url),
        "app_config": ConfigResource(config_dir=str(tmp_path)),
    }
    instance = dg.DagsterInstance.ephemeral()
    cursor = None
    keys = []
    for _ in range(3):
        data = signal_created_sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        )
        keys += [r.run_key for r in data.run_requests]
        cursor = data.cursor
    assert keys == ["signal_created:1-2", "signal_created:3-4", "signal_created:5-5"]


def test_sensor_run_config_is_accepted_by_the_job(sqlite_url: str) -> None:
    _seed(sqlite_url)
    resources = _resources(sqlite_url)
    data = signal_created_sensor.evaluate_tick(
        dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources)
    )
    (request,) = data.run_requests
    defs = dg.Definitions.merge(hybrid_sync.defs, dg.Definitions(resources=resources))
    result = defs.resolve_job_def("hybrid_sync_job").execute_in_process(
        run_config=request.run_config, tags=request.tags
    )
    assert result.success
    (reconciled,) = result.asset_materializations_for_node("reconciled_signals")
    assert reconciled.metadata["signals_seen"].value == 2


def test_schedule_cron_and_target() -> None:
    assert hybrid_sync_schedule.cron_schedule == "*/2 * * * *"
    assert hybrid_sync_schedule.execution_timezone == "UTC"
    assert hybrid_sync_schedule.job_name == "hybrid_sync_job"
    context = dg.build_schedule_context(scheduled_execution_time=T0)
    data = hybrid_sync_schedule.evaluate_tick(context)
    assert data.run_requests is not None and len(data.run_requests) == 1
