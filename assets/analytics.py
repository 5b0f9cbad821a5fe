"""Analytics domain (group ``analytics``, SPEC §17): ``signal_outcomes`` → ``strategy_performance``.

Both are partitioned by UTC day of *signal time* and rewrite their window idempotently
(delete, insert); a backfill over many days is one run. ``signal_outcomes`` reads every
candle closed by now, so an OPEN outcome of an earlier day is re-read as candles arrive:
``signal_outcomes_schedule`` re-materialises, every hour, the days from the oldest one
that still has an open (or not yet evaluated) signal to today.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
from sqlalchemy import func, select

from alphapulse_dagster.analytics.outcome_store import (
    compute_outcomes,
    load_outcomes,
    write_outcomes,
)
from alphapulse_dagster.analytics.outcomes import changed_decisions
from alphapulse_dagster.analytics.strategy_performance import (
    daily_rows,
    evaluate,
    write_daily_rows,
)
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.tables import ai_signals_mtf, candles, signal_outcomes, signals
from alphapulse_dagster.signals.mtf_run import trade_rule
from assets.contracts import contract_check
from assets.partitions import DAY_FORMAT, asset_window, daily_partitions, days_in
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from schemas.signal_outcomes import SignalOutcomeFrame

GROUP = "analytics"
OUTCOME_CONTRACT = "signal_outcome_contract"
DECIDED_OUTCOMES_UNCHANGED = "decided_outcomes_unchanged"
ANALYTICS_JOB_NAME = "analytics_job"


def _share(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _outcome_metadata(outcomes: pd.DataFrame) -> dict[str, float | int]:
    actual = outcomes[outcomes["entry_mode"] == "actual"]
    status = actual["status"]
    filled = int(actual["filled_at"].notna().sum())
    not_filled = int((status == "NOT_FILLED").sum())
    closed = actual[status == "CLOSED"]
    r = closed["r_multiple"].astype(float)
    return {
        "dagster/row_count": len(outcomes),
        "signals": len(actual),
        "closed": len(closed),
        "open": int((status == "OPEN").sum()),
        "not_filled": not_filled,
        "fill_rate": _share(filled, filled + not_filled),
        "win_rate": float(closed["first_target_hit"].astype(bool).mean()) if len(r) else 0.0,
        "profitable_rate": float((r > 0).mean()) if len(r) else 0.0,
        "expectancy_r": float(r.mean()) if len(r) else 0.0,
        "ambiguous": int(outcomes["ambiguous"].astype(bool).sum()),
        "counterfactual_rows": len(outcomes) - len(actual),
    }


@dg.asset(
    key="signal_outcomes",
    group_name=GROUP,
    kinds={"numpy", "sql"},
    deps=["stored_signals", "reconciled_signals"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(OUTCOME_CONTRACT, asset="signal_outcomes", blocking=True),
        dg.AssetCheckSpec(DECIDED_OUTCOMES_UNCHANGED, asset="signal_outcomes"),
    ],
)
def signal_outcomes_asset(
    context: dg.AssetExecutionContext, database: DatabaseResource, app_config: ConfigResource
) -> dg.MaterializeResult:
    """What every signal of the window (both sources) did after it fired, from candles
    closed by now: the actual trade and, for MTF signals, the market and candidate entries
    (``alphapulse_dagster/analytics``). The contract (exit after fill, R from the prices,
    MFE/MAE ≥ 0) must hold before anything is written; a decided outcome that changed since
    the last run fails the ERROR check."""
    since, until = asset_window(context)
    engine = database.get_engine()
    rule = trade_rule(app_config.load())
    with engine.connect() as connection:
        previous = load_outcomes(connection, since, until)
    outcomes = compute_outcomes(engine, since, until, rule, run_now(context))
    contract = contract_check(
        SignalOutcomeFrame, outcomes, asset_key="signal_outcomes", check_name=OUTCOME_CONTRACT
    )
    changed = changed_decisions(previous, outcomes)
    stable = dg.AssetCheckResult(
        asset_key="signal_outcomes",
        check_name=DECIDED_OUTCOMES_UNCHANGED,
        passed=changed.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "decided_before": int(previous["status"].isin(["CLOSED", "NOT_FILLED"]).sum()),
            "changed": len(changed),
            "changes": dg.MetadataValue.md(changed.head(20).to_markdown() if len(changed) else "-"),
        },
    )
    if not contract.passed:
        context.log.error("signal outcomes break their contract; nothing written")
        return dg.MaterializeResult(
            metadata={"dagster/row_count": 0, "rows_computed": len(outcomes)},
            check_results=[contract, stable],
        )
    written = write_outcomes(engine, outcomes, since, until)
    metadata = _outcome_metadata(outcomes) if len(outcomes) else {"dagster/row_count": 0}
    return dg.MaterializeResult(
        metadata={**metadata, "rows_written": written}, check_results=[contract, stable]
    )


@dg.asset(
    key="strategy_performance",
    group_name=GROUP,
    kinds={"numpy", "sql"},
    deps=["signal_outcomes"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def strategy_performance_asset(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """Per day of signal time: N, fill rate, win rate, expectancy in R with a seeded
    bootstrap interval, profit factor, drawdown, MFE/MAE and entry improvement per
    entry strategy and per entry mode, and the paired refined-vs-market ΔR
    (``analytics/strategy_performance.py``). Metadata: the window's own figures."""
    since, until = asset_window(context)
    engine = database.get_engine()
    with engine.connect() as connection:
        outcomes = load_outcomes(connection, since, until)
    days = [datetime.strptime(d, DAY_FORMAT).replace(tzinfo=UTC) for d in days_in(since, until)]
    rows = daily_rows(outcomes, days, run_now(context))
    written = write_daily_rows(engine, rows, since, until)
    window = evaluate(outcomes) if len(outcomes) else None
    metadata: dict[str, float | int] = {"dagster/row_count": written, "rows_written": written}
    if window is not None:
        everything = evaluate(outcomes, "source")["groups"]
        closed = sum(g["n"] for g in everything)
        metadata["closed_trades"] = closed
        for figure in ("expectancy_r", "win_rate", "fill_rate"):
            values = [(g[figure], g["n"]) for g in everything if g[figure] is not None]
            weight = sum(n for _, n in values)
            metadata[figure] = sum(v * n for v, n in values) / weight if weight else 0.0
        paired = window["paired"]
        metadata["paired_n"] = paired["n"]
        metadata["paired_delta_r"] = paired["delta_r"] if paired["delta_r"] is not None else 0.0
    return dg.MaterializeResult(metadata=metadata)


analytics_job = dg.define_asset_job(
    ANALYTICS_JOB_NAME,
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets("signal_outcomes", "strategy_performance"),
    partitions_def=daily_partitions,
)


# An outcome still open this long after its signal is no longer followed by the schedule
# (a dead feed, or a 1d trade past 96 bars): re-materialise its day by hand or a backfill.
FOLLOW_DAYS = 100


def open_days_start(database: DatabaseResource, today: datetime) -> datetime:
    """00:00 UTC of the oldest day, within ``FOLLOW_DAYS``, with a signal whose outcome is
    open or not yet evaluated (MTF signals, and registry signals with an entry on an
    instrument that has candles), else today."""
    o, s, r = signal_outcomes.c, ai_signals_mtf.c, signals.c
    horizon = today - timedelta(days=FOLLOW_DAYS)
    with database.get_engine().connect() as connection:
        open_outcome = connection.execute(
            select(func.min(o.signal_time)).where(o.status == "OPEN", o.signal_time >= horizon)
        ).scalar()
        unevaluated_mtf = connection.execute(
            select(func.min(s.timestamp))
            .select_from(ai_signals_mtf.outerjoin(signal_outcomes, o.signal_id == s.signal_id))
            .where(o.signal_id.is_(None), s.timestamp >= horizon)
        ).scalar()
        moment = func.coalesce(r.signal_time, r.created_at, r.confirmed_at)
        unevaluated_registry = connection.execute(
            select(func.min(moment))
            .select_from(signals.outerjoin(signal_outcomes, o.signal_id == r.signal_id))
            .where(
                o.signal_id.is_(None),
                r.source != "alphapulse",
                r.confirmed_at.is_not(None),
                moment >= horizon,
                r.symbol.in_(select(candles.c.symbol).distinct()),
            )
        ).scalar()
    found = [t for t in (open_outcome, unevaluated_mtf, unevaluated_registry) if t is not None]
    oldest = min([today, *found])
    return datetime.combine(oldest.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)


@dg.schedule(
    name="signal_outcomes_schedule",
    job=analytics_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def signal_outcomes_schedule(
    context: dg.ScheduleEvaluationContext, database: DatabaseResource
) -> dg.RunRequest:
    """Five minutes past every hour (after the hourly candles and MTF run): re-read the
    outcomes of every day that still has an open or unevaluated signal, as one run."""
    now = context.scheduled_execution_time or utcnow()
    today = now.astimezone(UTC)
    first = open_days_start(database, today)
    first_key, last_key = first.strftime(DAY_FORMAT), today.strftime(DAY_FORMAT)
    return dg.RunRequest(
        run_key=f"outcomes:{first_key}:{today:%Y-%m-%dT%H}",
        tags={
            "dagster/asset_partition_range_start": first_key,
            "dagster/asset_partition_range_end": last_key,
        },
    )


defs = dg.Definitions(
    assets=[signal_outcomes_asset, strategy_performance_asset],
    jobs=[analytics_job],
    schedules=[signal_outcomes_schedule],
)
