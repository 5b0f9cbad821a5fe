"""The partitioning of the desk's time-series assets: one partition per UTC hour (the
signal bar grid); symbols live inside a partition, never as a partition dimension."""

from __future__ import annotations

import dagster as dg

# The bundled sample starts in 2017; production deployments can live with the long tail
# (a backfill only runs the ranges asked for).
PARTITION_START = "2017-01-01-00:00"

hourly_partitions = dg.HourlyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC")
