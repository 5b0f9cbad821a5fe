"""The clock of a run: real time, unless the run replays history.

A run tagged ``alphapulse/now`` (ISO-8601, e.g. ``2019-06-15T00:00:00+00:00``) treats that
moment as "now": ``make demo`` replays the bundled 2017/2019 sample, whose signals would
otherwise all be past every window (cancellation, MFE updates, the health report's 30
days). The tag travels with the run, so the UI shows which clock a run used and a
re-execution keeps it. Runs without the tag — every schedule, sensor and UI launch — use
the real clock.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from alphapulse_dagster.clock import as_utc, utcnow

NOW_TAG = "alphapulse/now"


def run_now(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> datetime:
    """The run's "now" (timezone-aware UTC): the ``alphapulse/now`` tag, else the clock."""
    tagged = context.run.tags.get(NOW_TAG)
    if not tagged:
        return utcnow()
    try:
        return as_utc(datetime.fromisoformat(tagged))
    except ValueError:
        raise dg.Failure(f"run tag {NOW_TAG}={tagged!r}: expected an ISO-8601 time") from None
