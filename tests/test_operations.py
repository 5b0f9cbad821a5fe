"""Operations: pruning old runs from the Dagster instance; the failure logger is defined."""

from __future__ import annotations

import dagster as dg

from alphapulse_dagster.definitions import defs
from sensors.operations import purge_old_runs


@dg.op
def _noop() -> int:
    return 1


@dg.job
def _tiny() -> None:
    _noop()


def test_purge_deletes_finished_runs_older_than_cutoff() -> None:
    with dg.instance_for_test() as instance:
        for _ in range(3):
            assert _tiny.execute_in_process(instance=instance).success
        assert len(instance.get_runs()) == 3
        keep_all = purge_old_runs.execute_in_process(
            instance=instance, run_config={"ops": {"purge_runs": {"config": {"keep_days": 14}}}}
        )
        assert keep_all.output_for_node("purge_runs") == 0
        purge = purge_old_runs.execute_in_process(
            instance=instance, run_config={"ops": {"purge_runs": {"config": {"keep_days": 0}}}}
        )
        # the three tiny runs and the first purge run are older than "now"
        assert purge.output_for_node("purge_runs") == 4
        remaining = {run.job_name for run in instance.get_runs()}
        assert remaining == {"purge_old_runs"}


def test_failure_sensor_and_purge_schedule_are_registered() -> None:
    assert defs.resolve_sensor_def("run_failure_logger") is not None
    purge = defs.resolve_schedule_def("purge_old_runs_schedule")
    assert purge.cron_schedule == "17 3 * * *"
    # on without an operator: the retention the README promises depends on it
    assert purge.default_status == dg.DefaultScheduleStatus.RUNNING
    failure = defs.resolve_sensor_def("run_failure_logger")
    assert failure.default_status == dg.DefaultSensorStatus.RUNNING
