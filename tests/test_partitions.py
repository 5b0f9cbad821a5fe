"""The daily partitions of the time-series assets and the window helper."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from alphapulse_dagster.config import ConfigError, load_config
from assets.partitions import daily_partitions, days_in, range_window


def test_history_start_defaults_to_the_sample_first_day(tmp_path: Path) -> None:
    # no files at all: the documented default is the bundled sample's first day
    assert load_config(tmp_path).history.start == date(2017, 1, 1)
    assert load_config(Path(__file__).parents[1] / "config").history.start == date(2017, 1, 1)


def test_history_start_is_validated_with_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "mtf_config.yaml"
    path.write_text("history:\n  start: someday\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(path) in str(caught.value)
    assert "history.start" in str(caught.value)


def test_daily_partitions_start_at_history_and_include_today() -> None:
    assert daily_partitions.get_first_partition_key() == "2017-01-01"
    now = datetime(2026, 3, 5, 10, 1, tzinfo=UTC)
    # the day in progress is a partition (the hourly schedule fills it)
    keys = daily_partitions.get_partition_keys(current_time=now)
    assert keys[-1] == "2026-03-05"
    assert len(keys) == (date(2026, 3, 5) - date(2017, 1, 1)).days + 1
    assert daily_partitions.timezone == "UTC"


def test_range_window_is_half_open_over_whole_days() -> None:
    start, end = range_window(dg.PartitionKeyRange("2019-05-01", "2019-05-31"))
    assert start == datetime(2019, 5, 1, tzinfo=UTC)
    assert end == datetime(2019, 6, 1, tzinfo=UTC)
    assert range_window(dg.PartitionKeyRange("2019-05-12", "2019-05-12")) == (
        datetime(2019, 5, 12, tzinfo=UTC),
        datetime(2019, 5, 13, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="'2019-5-1x'"):
        range_window(dg.PartitionKeyRange("2019-5-1x", "2019-05-02"))
    with pytest.raises(ValueError, match="end before start"):
        range_window(dg.PartitionKeyRange("2019-05-02", "2019-05-01"))


def test_days_in_lists_the_days_a_window_touches() -> None:
    assert days_in(datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 3, tzinfo=UTC)) == [
        "2019-05-01",
        "2019-05-02",
    ]
    # 23:00 to 00:01 touches two days
    assert days_in(
        datetime(2019, 5, 1, 23, tzinfo=UTC), datetime(2019, 5, 2, 0, 1, tzinfo=UTC)
    ) == ["2019-05-01", "2019-05-02"]


def test_schedule_runs_the_day_in_progress_and_at_midnight_yesterday_too() -> None:
    from alphapulse_dagster.definitions import defs
    from sensors.mtf_signals import live_run_request, mtf_signal_schedule

    request = live_run_request(datetime(2019, 5, 12, 10, 1, tzinfo=UTC))
    assert request.partition_key == "2019-05-12"
    assert request.run_key == "2019-05-12T10:01"
    # 00:01: yesterday's last hourly bar closed at midnight; today's first 4h/1d closes too
    midnight = live_run_request(datetime(2019, 5, 12, 0, 1, tzinfo=UTC))
    assert midnight.partition_key is None
    assert midnight.tags["dagster/asset_partition_range_start"] == "2019-05-11"
    assert midnight.tags["dagster/asset_partition_range_end"] == "2019-05-12"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2019, 5, 12, 4, 1, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    (tick,) = mtf_signal_schedule.evaluate_tick(context).run_requests or []
    assert tick.partition_key == "2019-05-12"
    assert mtf_signal_schedule.cron_schedule == "1 * * * *"
