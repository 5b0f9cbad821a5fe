"""The partitioning of the desk's time-series assets: one partition per UTC day.

Candles, the MTF assets and the outcome assets share ``daily_partitions``. It starts at
the first day of the configured history (``history.start`` in ``mtf_config.yaml``, by
default the bundled sample's first day, 2017-01-01) and includes the day in progress
(``end_offset=1``), which the hourly MTF schedule re-materialises a minute after each
signal bar closes. Symbols live inside a partition (vectorised), never as a partition
dimension. A backfill of many days is one run (``BackfillPolicy.single_run()``) that sees
the whole range as one ``[start, end)`` window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import dagster as dg

from alphapulse_dagster.config import load_config

DAY_FORMAT = "%Y-%m-%d"


def history_start() -> date:
    """The first day of the configured history (``history.start``)."""
    return load_config().history.start


daily_partitions = dg.DailyPartitionsDefinition(
    start_date=history_start().strftime(DAY_FORMAT),
    timezone="UTC",
    end_offset=1,  # the day in progress is a partition: the live schedule fills it hourly
)


def day_start(partition_key: str) -> datetime:
    """00:00 UTC of the day a partition key (``YYYY-MM-DD``) names."""
    try:
        day = datetime.strptime(partition_key, DAY_FORMAT).date()
    except ValueError:
        raise ValueError(
            f"partition key {partition_key!r}: expected a UTC day as YYYY-MM-DD"
        ) from None
    return datetime.combine(day, time(0), tzinfo=UTC)


def range_window(key_range: dg.PartitionKeyRange) -> tuple[datetime, datetime]:
    """The ``[start, end)`` UTC window of a range of day partitions: 00:00 of the first
    day to 00:00 of the day after the last one."""
    start, last = day_start(key_range.start), day_start(key_range.end)
    if last < start:
        raise ValueError(f"partition range {key_range.start}..{key_range.end}: end before start")
    return start, last + timedelta(days=1)


def asset_window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """The ``[start, end)`` window of the partition (or single-run range) being
    materialised."""
    return range_window(context.partition_key_range)


def days_in(start: datetime, end: datetime) -> list[str]:
    """Partition keys of the days that ``[start, end)`` touches, in order."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [
        (first + timedelta(days=n)).strftime(DAY_FORMAT) for n in range((last - first).days + 1)
    ]
