"""A run's clock: the ``alphapulse/now`` tag when a run replays history, else real time."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.run_clock import NOW_TAG, run_now

SEEN: list[datetime] = []


@dg.asset
def clock_probe(context: dg.AssetExecutionContext) -> None:
    SEEN.append(run_now(context))


def test_tagged_run_uses_the_tagged_time() -> None:
    SEEN.clear()
    result = dg.materialize([clock_probe], tags={NOW_TAG: "2019-06-15T00:00:00+00:00"})
    assert result.success
    assert SEEN == [datetime(2019, 6, 15, tzinfo=UTC)]


def test_untagged_run_uses_the_real_clock() -> None:
    SEEN.clear()
    before = datetime.now(UTC)
    assert dg.materialize([clock_probe]).success
    assert before <= SEEN[0] <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_bad_tag_fails_the_run_naming_the_tag() -> None:
    result = dg.materialize([clock_probe], tags={NOW_TAG: "yesterday"}, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "alphapulse/now='yesterday'" in message and "ISO-8601" in message
