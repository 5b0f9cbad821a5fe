"""Operations: a run-failure sensor that logs every failed run with its id, and a daily
job that prunes old runs (and their event logs) from the Dagster instance.

A two-minute sync makes 720 runs a day; without pruning the instance database grows
without bound. ``purge_old_runs`` keeps ``keep_days`` (default 14) of history.
"""

import json
import logging
from datetime import UTC, datetime, timedelta

import dagster as dg

log = logging.getLogger("alphapulse.runs")


# both on by default: a production instance must log failures and prune runs without an
# operator having to remember to switch them on
@dg.run_failure_sensor(
    name="run_failure_logger",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_logger(context: dg.RunFailureSensorContext) -> None:
    """One structured line per failed run: run id, job, the failure message."""
    run = context.dagster_run
    line = json.dumps(
        {
            "event": "run_failed",
            "run_id": run.run_id,
            "job": run.job_name,
            "tags": {k: v for k, v in run.tags.items() if k.startswith("alphapulse/")},
            "error": context.failure_event.message,
        },
        sort_keys=True,
    )
    context.log.error(line)
    log.error(line)


class PurgeConfig(dg.Config):
    keep_days: int = 14
    batch: int = 500


@dg.op
def purge_runs(context: dg.OpExecutionContext, config: PurgeConfig) -> int:
    """Delete finished runs older than ``keep_days`` (runs and their event logs)."""
    cutoff = datetime.now(UTC) - timedelta(days=config.keep_days)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            created_before=cutoff,
            statuses=[
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ],
        ),
        limit=config.batch,
    )
    for record in records:
        context.instance.delete_run(record.dagster_run.run_id)
    context.log.info(
        json.dumps({"event": "runs_purged", "count": len(records), "before": cutoff.isoformat()})
    )
    return len(records)


@dg.job(executor_def=dg.in_process_executor)
def purge_old_runs() -> None:
    purge_runs()


purge_old_runs_schedule = dg.ScheduleDefinition(
    name="purge_old_runs_schedule",
    job=purge_old_runs,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    jobs=[purge_old_runs],
    schedules=[purge_old_runs_schedule],
    sensors=[run_failure_logger],
)
