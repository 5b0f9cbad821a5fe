"""Schedules of the MTF signal desk.

``mtf_signal_schedule`` runs ``mtf_signal_job`` a minute after every hour, when the
signal bars of the hour have closed (1h, 4h and 1d bars all close on the hour grid). It
materialises the day in progress, which stores only bars closed by then and the signals
whose bar has closed; a re-run of a day stores nothing twice. At 00:01 the run covers
yesterday as well, so yesterday's last bar (opened 23:00, closed at midnight) is stored
with its day, in the same run that stores today's first signals.

``signal_parity_schedule`` runs the ``signal_parity`` check each morning on yesterday.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from assets.mtf_signals import mtf_signal_job, signal_parity_job
from assets.partitions import DAY_FORMAT

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def live_run_request(scheduled: datetime) -> dg.RunRequest:
    """The run for the hour that closed just before ``scheduled``: the day in progress,
    and at the first run of a day also the day that just ended (one run)."""
    today = scheduled.strftime(DAY_FORMAT)
    hour_ago = (scheduled - timedelta(hours=1)).strftime(DAY_FORMAT)
    run_key = scheduled.strftime("%Y-%m-%dT%H:%M")
    if hour_ago == today:
        return dg.RunRequest(run_key=run_key, partition_key=today)
    return dg.RunRequest(run_key=run_key, tags={RANGE_START: hour_ago, RANGE_END: today})


@dg.schedule(
    name="mtf_signal_schedule",
    job=mtf_signal_job,
    cron_schedule="1 * * * *",
    execution_timezone="UTC",
)
def mtf_signal_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """A minute after each hour: the day in progress (and, at 00:01, yesterday too)."""
    return live_run_request(context.scheduled_execution_time)


signal_parity_schedule = dg.ScheduleDefinition(
    name="signal_parity_schedule",
    job=signal_parity_job,
    cron_schedule="31 0 * * *",  # after the 00:01 run has completed yesterday
    execution_timezone="UTC",
)

defs = dg.Definitions(schedules=[mtf_signal_schedule, signal_parity_schedule])
