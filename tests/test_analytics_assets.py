"""The analytics assets through Dagster: a day range as one run, numeric metadata, the
contract and the ERROR check that a decided outcome never changes, the hourly schedule
that follows open outcomes, and ``alphapulse report``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandera.pandas as pa
import pytest
import sqlalchemy as sa

from alphapulse_dagster.analytics import outcome_refresh
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_outcomes, strategy_performance
from alphapulse_dagster.market.timeframes import duration
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.signal_store import store_signals
from assets import analytics
from assets.run_clock import NOW_TAG
from resources import ConfigResource, DatabaseResource
from tests.signal_factory import T0, refined_signal
from tests.test_outcomes_store import _candles

NOW = "2019-06-04T00:00:00+00:00"  # the clock, frozen after the crafted bars


@pytest.fixture
def desk(sqlite_url: str) -> str:
    engine = make_engine(sqlite_url)
    _candles(engine)
    signals = [refined_signal(), refined_signal(direction="SHORT")]
    store_signals(engine, signals, SignalCache(None), T0, 4, duration)
    engine.dispose()
    return sqlite_url


def _materialize(
    url: str,
    instance: dg.DagsterInstance,
    assets: list[Any] | None = None,
    *,
    raise_on_error: bool = True,
) -> dg.ExecuteInJobResult:
    """The two analytics assets (or ``assets``) over 2019-06-02, one range run at ``NOW``."""
    return dg.materialize(
        assets or [analytics.signal_outcomes_asset, analytics.strategy_performance_asset],
        resources={"database": DatabaseResource(url=url), "app_config": ConfigResource()},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2019-06-02",
            "dagster/asset_partition_range_end": "2019-06-03",
            NOW_TAG: NOW,
        },
        raise_on_error=raise_on_error,
    )


def test_a_day_range_in_one_run_with_metadata_and_checks(desk: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(desk, instance)
        assert result.success
        meta = {
            e.asset_key.to_user_string(): {
                k: v.value for k, v in e.materialization.metadata.items()
            }
            for e in result.get_asset_materialization_events()
        }
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert len(result.get_asset_materialization_events()) == 4  # 2 assets x 2 days, 1 run
        again = _materialize(desk, instance)  # idempotent: the same rows, nothing changed
        assert again.success
        stable = {c.check_name: c for c in again.get_asset_check_evaluations()}
    out = meta["signal_outcomes"]
    assert (out["signals"], out["closed"], out["dagster/row_count"]) == (2, 2, 4)
    assert out["win_rate"] == 0.5 and out["expectancy_r"] == pytest.approx((400 / 120 - 1) / 2)
    assert checks == {analytics.OUTCOME_CONTRACT: True, analytics.DECIDED_OUTCOMES_UNCHANGED: True}
    assert stable[analytics.DECIDED_OUTCOMES_UNCHANGED].passed
    assert stable[analytics.DECIDED_OUTCOMES_UNCHANGED].metadata["decided_before"].value == 4
    engine = make_engine(desk)
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(signal_outcomes)).scalar()
            == 4
        )
        paired = connection.execute(
            sa.select(strategy_performance).where(strategy_performance.c.group_by == "paired")
        ).one()
    engine.dispose()
    assert paired.n == 2 and paired.expectancy_r == pytest.approx(0.0)


def test_a_decided_outcome_that_changes_fails_the_error_check(desk: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert _materialize(desk, instance).success
        engine = make_engine(desk)
        with engine.begin() as connection:  # as if the stored result had been different
            connection.execute(sa.update(signal_outcomes).values(r_multiple=9.0))
        engine.dispose()
        result = _materialize(desk, instance)
    (check,) = [
        c for c in result.get_asset_check_evaluations()
        if c.check_name == analytics.DECIDED_OUTCOMES_UNCHANGED
    ]  # fmt: skip
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["changed"].value == 4


def test_the_schedule_follows_days_with_open_outcomes(desk: str) -> None:
    database = DatabaseResource(url=desk)
    # nothing evaluated yet: the stored signals' day is where the run starts
    at = datetime(2019, 6, 10, 0, 5, tzinfo=UTC)
    request = analytics.signal_outcomes_schedule(
        dg.build_schedule_context(scheduled_execution_time=at), database=database
    )
    assert request.tags["dagster/asset_partition_range_start"] == "2019-06-03"
    assert request.tags["dagster/asset_partition_range_end"] == "2019-06-10"
    with dg.DagsterInstance.ephemeral() as instance:
        assert _materialize(desk, instance).success
    # everything decided: only today
    request = analytics.signal_outcomes_schedule(
        dg.build_schedule_context(scheduled_execution_time=at + timedelta(days=1)),
        database=database,
    )
    assert request.tags["dagster/asset_partition_range_start"] == "2019-06-11"


def test_report_command_prints_the_groups(desk: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert _materialize(desk, instance).success
    env = {**os.environ, "ALPHAPULSE_DATABASE_URL": desk}
    cmd = [sys.executable, "-m", "alphapulse_dagster.cli", "report"]
    table = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "FIBONACCI_618" in table.stdout and "small_sample" in table.stdout
    as_json = subprocess.run(
        [*cmd, "--json", "--group-by", "entry_mode"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    body = json.loads(as_json.stdout)
    assert {g["key"] for g in body["groups"]} == {"actual", "market"}
    bad = subprocess.run([*cmd, "--group-by", "colour"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "group-by" in bad.stderr


def _metadata_by_partition(result: dg.ExecuteInJobResult) -> dict[tuple[str, str], dict]:
    return {
        (e.asset_key.to_user_string(), e.partition): {
            k: v.value for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


def test_a_range_run_records_each_days_own_figures(desk: str) -> None:
    # the run covers 06-02 and 06-03; only 06-03 has signals (a LONG that reached its last
    # target, +3.33 R, and a SHORT stopped, -1 R): each partition gets its own day's numbers
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(desk, instance)
    assert result.success
    meta = _metadata_by_partition(result)
    day1, day2 = meta[("signal_outcomes", "2019-06-02")], meta[("signal_outcomes", "2019-06-03")]
    assert (day1["signals"], day1["closed"], day1["dagster/row_count"]) == (0, 0, 0)
    assert (day2["signals"], day2["closed"], day2["dagster/row_count"]) == (2, 2, 4)
    assert (day2["win_rate"], day2["fill_rate"], day2["rows_written"]) == (0.5, 1.0, 4)
    assert day2["expectancy_r"] == pytest.approx((400 / 120 - 1) / 2)
    perf1 = meta[("strategy_performance", "2019-06-02")]
    perf2 = meta[("strategy_performance", "2019-06-03")]
    assert (perf1["closed_trades"], perf1["dagster/row_count"]) == (0, 0)
    assert (perf2["closed_trades"], perf2["win_rate"]) == (2, 0.5)
    assert perf2["expectancy_r"] == pytest.approx((400 / 120 - 1) / 2)
    assert perf2["paired_n"] == 2


def test_rows_that_break_the_contract_are_not_written(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows go in, a part of instruments at a time, while the contract runs; a failed
    contract rolls every part back (both back ends): nothing stored, the blocking check
    failed."""
    engine = make_engine(db_url)
    _candles(engine)
    _candles(engine, symbol="ETHUSD")
    signals = [refined_signal(), refined_signal("ETHUSD")]
    store_signals(engine, signals, SignalCache(None), T0, 4, duration)
    monkeypatch.setattr(outcome_refresh, "PART_TRADES", 1)  # one part per instrument
    written: list[int] = []
    replace = analytics.replace_changed
    monkeypatch.setattr(
        analytics, "replace_changed", lambda c, part: written.append(replace(c, part)) or 0
    )
    strict = pa.DataFrameSchema({"mfe_r": pa.Column(float, pa.Check.lt(-1))})  # never holds
    monkeypatch.setattr(analytics, "SignalOutcomeFrame", strict)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(
            db_url, instance, [analytics.signal_outcomes_asset], raise_on_error=False
        )
    assert written == [2, 2]  # actual and market of each instrument's signal, in two parts
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks[analytics.OUTCOME_CONTRACT].passed
    assert checks[analytics.OUTCOME_CONTRACT].metadata["failing_rows"].value == 4
    with engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(signal_outcomes))
        assert stored.scalar() == 0
    engine.dispose()
