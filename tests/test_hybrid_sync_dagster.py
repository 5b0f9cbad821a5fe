"""Dagster layer of the hybrid sync: materialize on both backends, checks, sensor, schedule."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from hybrid_sync_support import T0, append, created, entry, event, materialized

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_health_metrics, signals
from assets import hybrid_sync
from assets.contracts import contract_check
from resources import ConfigResource, DatabaseResource
from schemas.gap_report import GapReportSchema
from schemas.sync_health import AUDIT_MONOTONICITY, health_thresholds_schema
from sensors.hybrid_sync import SYNC_STEP, hybrid_sync_schedule, signal_created_sensor

SYNC_ASSET_KEYS = ("signal_lifecycle", "reconciled_signals", "gap_report", "signal_health")

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
    assert keys >= {"signal_events", *SYNC_ASSET_KEYS}
    dg.Definitions.validate_loadable(defs)


def test_materialize_sync_assets(db_url: str) -> None:
    _seed(db_url)
    selection = [
        hybrid_sync.signal_events_source,
        hybrid_sync.hybrid_sync_cycle,
        hybrid_sync.health_thresholds,
        hybrid_sync.reconciliation_monotonicity,
    ]
    result = dg.materialize(selection, resources=_resources(db_url))
    assert result.success
    (lifecycle,) = materialized(result, "signal_lifecycle")
    assert lifecycle.metadata["rows_inserted"].value == 2
    (reconciled,) = materialized(result, "reconciled_signals")
    assert reconciled.metadata["fields_changed"].value > 0
    (gaps,) = materialized(result, "gap_report")
    assert gaps.metadata["gaps_no_signal_created"].value == 1
    assert gaps.metadata["open_gaps"].value >= 1
    (health,) = materialized(result, "signal_health")
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
    (reconciled,) = materialized(again, "reconciled_signals")
    assert reconciled.metadata["fields_changed"].value == 0


def test_monotonicity_check_fails_when_a_confidence_went_down(sqlite_url: str) -> None:
    from alphapulse_dagster.db.tables import sync_audit_log

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(sync_audit_log),
            [
                {
                    "sync_run_id": "bad-run",
                    "signal_id": signal_id,
                    "field": "targets",
                    "old_value": None,
                    "new_value": [1.0],
                    "tier": "2",
                    "confidence": 0.8,
                    "old_confidence": old,
                    "reason": "test",
                    "action_timestamp": T0,
                }
                for signal_id, old in (("s", 1.0), ("t", None), ("u", 0.8))
            ],
        )
    engine.dispose()
    database = DatabaseResource(url=sqlite_url)
    frame = hybrid_sync.run_audit_frame(database, "bad-run")
    result = contract_check(
        AUDIT_MONOTONICITY, frame, asset_key="reconciled_signals", check_name="monotonicity"
    )
    assert not result.passed
    assert result.metadata["rows_checked"].value == 3
    assert result.metadata["failing_rows"].value == 1  # only "s": 1.0 -> 0.8
    assert hybrid_sync.run_audit_frame(database, "other-run").empty


def test_health_thresholds_schema_holds_the_configured_minimums() -> None:
    from alphapulse_dagster.config import HealthThresholds

    schema = health_thresholds_schema(
        HealthThresholds(min_health_score=70, min_signal_coverage=0.8)
    )
    ok = pd.DataFrame([{"health_score": 70.0, "signal_coverage": None}])
    low = pd.DataFrame([{"health_score": 69.9, "signal_coverage": 0.5}])
    assert contract_check(schema, ok, asset_key="signal_health", check_name="t").passed
    failed = contract_check(schema, low, asset_key="signal_health", check_name="t")
    assert not failed.passed
    assert failed.metadata["failures_by_check"].value == {
        "greater_than_or_equal_to(70.0)": 1,
        "greater_than_or_equal_to(0.8)": 1,
    }


def test_an_empty_gap_report_has_the_contract_types(sqlite_url: str) -> None:
    """A fresh install has no gaps: the empty frame must still carry the schema's column
    types (under pandas 3 an empty frame's text columns are ``object``, which the
    contract rejected: gap_report showed red on a new install)."""
    frame = hybrid_sync.gap_frame([])
    assert frame.empty
    GapReportSchema.validate(frame, lazy=True)  # raises on a wrong dtype
    result = dg.materialize(
        [hybrid_sync.signal_events_source, hybrid_sync.hybrid_sync_cycle],
        resources=_resources(sqlite_url),
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "gap_report_contract" and check.passed


def test_lineage_owners_pool_and_freshness() -> None:
    graph = dg.Definitions.merge(
        hybrid_sync.defs, dg.Definitions(resources=_resources("sqlite://"))
    ).resolve_asset_graph()
    events = graph.get(dg.AssetKey("signal_events"))
    assert dg.AssetKey("stored_signals") in events.parent_keys
    health = graph.get(dg.AssetKey("signal_health"))
    assert health.freshness_policy is not None
    cycle = hybrid_sync.hybrid_sync_cycle
    assert cycle.op.pool == "hybrid_sync"
    for key in SYNC_ASSET_KEYS:
        spec = cycle.specs_by_key[dg.AssetKey(key)]
        assert spec.owners and spec.description and "SPEC" not in spec.description
    assert graph.get(dg.AssetKey("reconciled_signals")).parent_keys == {
        dg.AssetKey("signal_lifecycle")
    }


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
    ids = request.run_config["ops"][SYNC_STEP]["config"]["signal_ids"]
    assert len(ids) == 5 and all(i.startswith("BTCUSDT:20250106_12") for i in ids)
    assert set(request.run_config["ops"]) == {SYNC_STEP}
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
    (reconciled,) = materialized(result, "reconciled_signals")
    assert reconciled.metadata["signals_seen"].value == 2


def test_schedule_cron_and_target() -> None:
    assert hybrid_sync_schedule.cron_schedule == "*/2 * * * *"
    assert hybrid_sync_schedule.execution_timezone == "UTC"
    assert hybrid_sync_schedule.job_name == "hybrid_sync_job"
    context = dg.build_schedule_context(scheduled_execution_time=T0)
    data = hybrid_sync_schedule.evaluate_tick(context)
    assert data.run_requests is not None and len(data.run_requests) == 1
