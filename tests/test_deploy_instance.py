"""The shipped production instance file ``deploy/dagster.yaml`` against the real Postgres:
``DagsterInstance.get()`` from a ``DAGSTER_HOME`` holding that file (``DAGSTER_PG_*``
pointing at a scratch database) runs the project's jobs and writes their event logs there.

The failure this guards against: with SQLAlchemy 2.1 a plain ``postgresql://`` URL makes
dagster-postgres use psycopg 3, which fails on the first event write (``NOTIFY … $1``).
The shipped ``postgres_db`` block uses psycopg2.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_health_metrics, signals
from assets import hybrid_sync
from resources import ConfigResource, DatabaseResource
from sensors.operations import purge_old_runs
from tests.conftest import PG_ADMIN_URL, _drop_pg_database, _new_pg_database
from tests.dagster_stack import DEPLOY_YAML, prod_dagster_home
from tests.hybrid_sync_support import append, created, entry

pytestmark = pytest.mark.postgres

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "config")


@pytest.fixture
def prod_instance(
    pg_admin_engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    name = _new_pg_database(pg_admin_engine)
    try:
        for key, value in prod_dagster_home(tmp_path / "home", PG_ADMIN_URL, name).items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        _drop_pg_database(pg_admin_engine, name)


def test_shipped_file_shape() -> None:
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    block = config["storage"]["postgres"]["postgres_db"]
    assert block["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert block["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert block["scheme"] == "postgresql+psycopg2"  # psycopg 3 fails on NOTIFY $1
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    runs = config["concurrency"]["runs"]
    limits = {limit["key"]: limit["limit"] for limit in runs["tag_concurrency_limits"]}
    assert limits == {"alphapulse/sync": 1, "alphapulse/mtf": 1}
    assert runs["max_concurrent_runs"] >= 1
    assert config["concurrency"]["pools"]["default_limit"] == 1  # the sync's pool
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] >= 1


def test_instance_from_shipped_file_runs_jobs_on_postgres(
    prod_instance: dg.DagsterInstance, pg_url: str
) -> None:
    instance = prod_instance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.get_settings("retention")["schedule"]["purge_after_days"] == 7

    # the operations job: a plain op job, events written through psycopg2
    purge = purge_old_runs.execute_in_process(instance=instance)
    assert purge.success
    # the hybrid sync, against a Postgres app database: asset materializations + checks
    engine = make_engine(pg_url)
    recent = utcnow() - timedelta(hours=1)
    append(engine, created("20250106_120000_LONG", recent), entry("20250106_120000_LONG", recent))
    result = dg.materialize(
        [
            hybrid_sync.signal_events_source,
            hybrid_sync.hybrid_sync_cycle,
            hybrid_sync.reconciliation_monotonicity,
        ],
        resources={
            "database": DatabaseResource(url=pg_url),
            "app_config": ConfigResource(config_dir=CONFIG_DIR),
        },
        instance=instance,
        tags={"alphapulse/sync": "true"},
    )
    assert result.success
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(signals)).scalar() == 1
        assert conn.execute(sa.select(signal_health_metrics.c.sync_run_id)).scalar() == (
            result.run_id
        )
    engine.dispose()

    # read back from the instance database: runs, event log, asset materializations
    runs = {run.run_id: run for run in instance.get_runs()}
    assert set(runs) == {purge.run_id, result.run_id}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs.values())
    records = instance.get_records_for_run(result.run_id).records
    assert len(records) > 10
    latest = instance.get_latest_materialization_event(dg.AssetKey("reconciled_signals"))
    assert latest is not None and latest.run_id == result.run_id
    assert latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["fields_changed"].value > 0
