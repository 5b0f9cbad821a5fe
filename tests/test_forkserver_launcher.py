"""The shipped run launcher (``launchers.forkserver``, named in deploy/dagster.yaml) against
a Postgres-backed instance: a launched run executes in a forked worker and succeeds, its
events land in the instance's event log, and ``terminate`` cancels a running run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from launchers.forkserver import PID_TAG, ForkserverRunLauncher
from tests import launcher_jobs
from tests.conftest import PG_ADMIN_URL, _drop_pg_database, _new_pg_database
from tests.dagster_stack import prod_dagster_home

pytestmark = pytest.mark.postgres


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


def _launch(instance: dg.DagsterInstance, job: dg.JobDefinition) -> str:
    origin = dg.reconstructable(job).get_python_origin()
    run = instance.create_run_for_job(job, job_code_origin=origin)
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    return run.run_id


def _wait(
    instance: dg.DagsterInstance, run_id: str, until: set[dg.DagsterRunStatus]
) -> dg.DagsterRun:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.status in until:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {run.status} after 60 s")


def _wait_for_step(instance: dg.DagsterInstance, run_id: str) -> None:
    """Until the run's step has started. A run is STARTED before its multiprocess executor
    has launched the step's process; an interrupt in that window is never forwarded to the
    step (Dagster's executor sets the termination event only of steps whose process it
    already holds), so the op would run its full minute and the run stay CANCELING."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(
            e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
            for e in instance.all_logs(run_id)
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"run {run_id}: no step started after 60 s")


def test_forked_run_succeeds_and_cancels(prod_instance: dg.DagsterInstance) -> None:
    instance = prod_instance
    assert isinstance(instance.run_launcher, ForkserverRunLauncher)

    run_id = _launch(instance, launcher_jobs.quick_job)
    run = _wait(instance, run_id, {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE})
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert int(run.tags[PID_TAG]) > 0
    outputs = [
        e
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.is_successful_output
    ]
    assert len(outputs) == 1  # answer's output, written by the forked worker

    slow = _launch(instance, launcher_jobs.slow_job)
    _wait_for_step(instance, slow)
    assert instance.run_launcher.terminate(slow)
    run = _wait(instance, slow, {dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE})
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert not instance.run_launcher.terminate(slow)  # finished: nothing to terminate
