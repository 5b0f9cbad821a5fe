"""The hybrid sync's triggers: every two minutes, and on every new SIGNAL_CREATED."""

from __future__ import annotations

import json

import dagster as dg
from sqlalchemy import select

from alphapulse_dagster.db.tables import signal_events
from alphapulse_dagster.sync.log_horizon import safe_head
from resources import ConfigResource, DatabaseResource

SYNC_JOB_NAME = "hybrid_sync_job"
# the one step of the job (a multi-asset over signal_lifecycle, reconciled_signals,
# gap_report and signal_health); its run config carries the scope
SYNC_STEP = "hybrid_sync_cycle"
# the Dagster concurrency pool the step runs in (limit 1: deploy/dagster.yaml)
SYNC_POOL = "hybrid_sync"
SYNC_RUN_TAG = "alphapulse/sync"
# the sensor's barrier on signal_events (log_horizon) waits at most this long per tick: it
# runs every 5 s, so it may make webhook inserts wait far less than the sync's barrier does
SENSOR_BARRIER_TIMEOUT_MS = 250
# Dagster's sensor daemon evaluates sensors once per 5 s loop; a 5 s minimum interval made
# every other loop fall a few milliseconds short, so the sensor ticked every 10 s. Below
# the loop, it ticks on every loop (bench/RESULTS.md, webhook → reconciled).
SENSOR_MINIMUM_INTERVAL_SECONDS = 2

hybrid_sync_schedule = dg.ScheduleDefinition(
    name="hybrid_sync_schedule",
    cron_schedule="*/2 * * * *",
    execution_timezone="UTC",
    job_name=SYNC_JOB_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Incremental hybrid sync every two minutes (UTC): new events, active signals.",
)


def sync_run_config(scope: dict[str, object]) -> dict[str, object]:
    """The job's run config for one cycle over ``scope`` (``signal_ids``, ``full``,
    ``rescan``)."""
    return {"ops": {SYNC_STEP: {"config": scope}}}


def new_signal_created(
    database: DatabaseResource, after_event_id: int, limit: int, head: int | None = None
) -> list[tuple[int, str]]:
    """(event_id, signal_id) of SIGNAL_CREATED events in ``(after_event_id, head]`` (no
    upper bound when ``head`` is None), oldest first, at most ``limit``: a range scan of
    the (event_type, event_id) index."""
    query = (
        select(signal_events.c.event_id, signal_events.c.signal_id)
        .where(
            signal_events.c.event_type == "SIGNAL_CREATED",
            signal_events.c.event_id > after_event_id,
            *(() if head is None else (signal_events.c.event_id <= head,)),
        )
        .order_by(signal_events.c.event_id)
        .limit(limit)
    )
    with database.get_engine().connect() as conn:
        return [(int(r.event_id), r.signal_id) for r in conn.execute(query)]


@dg.sensor(
    name="signal_created_sensor",
    job_name=SYNC_JOB_NAME,
    minimum_interval_seconds=SENSOR_MINIMUM_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New SIGNAL_CREATED rows past the cursor => one sync run for the batch.",
)
def signal_created_sensor(
    context: dg.SensorEvaluationContext, database: DatabaseResource, app_config: ConfigResource
) -> dg.SensorResult | dg.SkipReason:
    """Cursor: ``{"last_event_id": N}``. One run request per tick for up to
    ``sensor_batch_limit`` events (the rest follow on the next tick); ``run_key`` is the id
    range, so a re-evaluated tick never launches the batch twice.

    The cursor is a sequence id, so it has the same hazard as the projection's: an id can
    commit after a higher one. The tick therefore reads only up to the log's safe head
    (:func:`~alphapulse_dagster.sync.log_horizon.safe_head`). A SIGNAL_CREATED committed late
    would otherwise get no run of its own (the next scheduled cycle would still reconcile
    it, up to 2 minutes later). The barrier is a SHARE lock taken every tick. Writers'
    transactions are short, so webhook inserts normally wait microseconds (at most the rest
    of one in-flight commit), and never more than ``SENSOR_BARRIER_TIMEOUT_MS``. If a
    writer holds the table longer, the tick skips and the cursor stays where it is."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    after = int(cursor.get("last_event_id", 0))
    limit = app_config.load().hybrid_sync.sensor_batch_limit
    head = safe_head(database.get_engine(), SENSOR_BARRIER_TIMEOUT_MS)
    if head is None:
        return dg.SkipReason(f"a writer holds signal_events; cursor stays at event {after}")
    rows = new_signal_created(database, after, limit, head)
    if not rows:
        return dg.SkipReason(f"no SIGNAL_CREATED after event {after}")
    first, last = rows[0][0], rows[-1][0]
    signal_ids = sorted({signal_id for _, signal_id in rows})
    scope = {"signal_ids": signal_ids, "full": False}
    request = dg.RunRequest(
        run_key=f"signal_created:{first}-{last}",
        run_config=sync_run_config(scope),
        tags={
            SYNC_RUN_TAG: "true",
            "alphapulse/trigger": "signal_created",
            "alphapulse/event_range": f"{first}-{last}",
            "alphapulse/signal_count": str(len(signal_ids)),
        },
    )
    return dg.SensorResult(run_requests=[request], cursor=json.dumps({"last_event_id": last}))
