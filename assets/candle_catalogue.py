"""Tell the Dagster instance which ``candles`` partitions an import filled.

``alphapulse import-candles`` writes candles outside any Dagster run; without this the
catalogue would show ``candles`` "never materialized" right after ``make dev`` loaded two
years of bars. For each UTC day the import wrote, a runless ``AssetMaterialization`` of
that day's partition is reported to the instance of ``DAGSTER_HOME``, with that day's own
row count. The CLI imports this module lazily, only when ``DAGSTER_HOME`` is set, so the
core never imports Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from assets.partitions import daily_partitions


def report_filled_days(
    rows_by_day: Mapping[str, int], source: str, instance: dg.DagsterInstance | None = None
) -> int:
    """Report one runless materialisation per day partition in ``rows_by_day`` that the
    catalogue does not already show filled (a re-import, e.g. every ``make dev``, adds no
    events; each event costs two SQLite commits on the dev instance). Days outside the
    partitions, e.g. before ``history.start``, are left out. Returns how many were
    reported."""
    instance = instance or dg.DagsterInstance.get()
    keys = set(daily_partitions.get_partition_keys())
    filled = instance.get_materialized_partitions(dg.AssetKey("candles"))
    days = sorted(day for day in rows_by_day if day in keys and day not in filled)
    for day in days:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key="candles",
                partition=day,
                description=f"imported by alphapulse import-candles from {source}",
                metadata={"rows_written": rows_by_day[day], "dagster/row_count": rows_by_day[day]},
            )
        )
    return len(days)
