"""Analytics domain (group ``analytics``, SPEC §17): ``signal_outcomes`` → ``strategy_performance``.

Both are partitioned by UTC day of *signal time* and rewrite their window idempotently
(delete, insert); a backfill over many days is one run. ``signal_outcomes`` reads every
candle closed by now, so an OPEN outcome of an earlier day is re-read as candles arrive:
``signal_outcomes_schedule`` re-materialises, every hour, the days from the oldest one
that still has an open (or not yet evaluated) signal to today.
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from alphapulse_dagster.analytics.outcome_refresh import (
    RECHECK,
    OutcomeRefresh,
    RefreshPart,
    read_refresh,
    refresh_parts,
    replace_changed,
    whole_refresh,
)
from alphapulse_dagster.analytics.outcome_store import load_outcomes
from alphapulse_dagster.analytics.outcomes import changed_decisions
from alphapulse_dagster.analytics.strategy_performance import (
    PERFORMANCE_COLUMNS,
    daily_rows,
    write_daily_rows,
)
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.tables import ai_signals_mtf, candles, signal_outcomes, signals
from alphapulse_dagster.gc_pause import without_gc_pauses
from alphapulse_dagster.market.bar_series import to_ns
from alphapulse_dagster.signals.mtf_run import trade_rule
from alphapulse_dagster.signals.trade_management import TradeRule
from assets.contracts import contract_check
from assets.partitions import DAY_FORMAT, asset_window, daily_partitions, days_in
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from schemas.signal_outcomes import SignalOutcomeFrame

GROUP = "analytics"
OUTCOME_CONTRACT = "signal_outcome_contract"
DECIDED_OUTCOMES_UNCHANGED = "decided_outcomes_unchanged"
ANALYTICS_JOB_NAME = "analytics_job"


_DAY_NS = 86_400 * 10**9


def _day_keys(times: pd.Series) -> np.ndarray:
    """Partition keys (UTC day of signal time) of many times: one strftime per distinct day."""
    days = to_ns(times) // _DAY_NS
    uniq, inverse = np.unique(days, return_inverse=True)
    keys = np.array([pd.Timestamp(int(d) * _DAY_NS).strftime(DAY_FORMAT) for d in uniq], object)
    return keys[inverse] if len(days) else np.array([], object)  # type: ignore[no-any-return]


def outcome_figures_by_day(window: pd.DataFrame, written: pd.DataFrame) -> dict[str, dict]:
    """Each day's own figures (partition key -> metadata) from the window's rows in memory:
    rows, the actual signals and their statuses, fill rate, win rate (first target before
    the stop), profitable rate (R > 0), expectancy in R, ambiguous rows, counterfactual rows,
    rows written this run."""
    if window.empty:
        return {}
    actual = (window["entry_mode"] == "actual").to_numpy()
    status = window["status"].to_numpy()
    closed = actual & (status == "CLOSED")
    r = np.where(closed, window["r_multiple"].to_numpy(np.float64), 0.0)
    parts = pd.DataFrame(
        {
            "day": _day_keys(window["signal_time"]),
            "rows": 1,
            "signals": actual,
            "closed": closed,
            "open": actual & (status == "OPEN"),
            "not_filled": actual & (status == "NOT_FILLED"),
            "filled": actual & window["filled_at"].notna().to_numpy(),
            "won": closed & window["first_target_hit"].to_numpy(bool),
            "profitable": closed & (r > 0),
            "r": r,
            "ambiguous": window["ambiguous"].to_numpy(bool),
        }
    )
    sums = parts.groupby("day").sum()
    wrote = pd.Series(_day_keys(written["signal_time"])).value_counts() if len(written) else {}
    out = {}
    for day, g in sums.iterrows():
        closed_n, decided = int(g["closed"]), int(g["filled"] + g["not_filled"])
        out[str(day)] = {
            "dagster/row_count": int(g["rows"]),
            "signals": int(g["signals"]),
            "closed": closed_n,
            "open": int(g["open"]),
            "not_filled": int(g["not_filled"]),
            "fill_rate": float(g["filled"] / decided) if decided else 0.0,
            "win_rate": float(g["won"] / closed_n) if closed_n else 0.0,
            "profitable_rate": float(g["profitable"] / closed_n) if closed_n else 0.0,
            "expectancy_r": float(g["r"] / closed_n) if closed_n else 0.0,
            "ambiguous": int(g["ambiguous"]),
            "counterfactual_rows": int(g["rows"] - g["signals"]),
            "rows_written": int(wrote.get(day, 0)),
        }
    return out


_NO_OUTCOMES = {
    "dagster/row_count": 0, "signals": 0, "closed": 0, "open": 0, "not_filled": 0,
    "fill_rate": 0.0, "win_rate": 0.0, "profitable_rate": 0.0, "expectancy_r": 0.0,
    "ambiguous": 0, "counterfactual_rows": 0, "rows_written": 0,
}  # fmt: skip


class OutcomeRunConfig(dg.Config):
    """``recompute_decided``: re-read every signal of the window, settled ones too (after
    a change of the trade rule or its settings); the ERROR check then compares them all."""

    recompute_decided: bool = False


def _refresh_outcomes(
    engine: Engine,
    since: datetime,
    until: datetime,
    rule: TradeRule,
    now: datetime,
    recompute_decided: bool,
) -> tuple[OutcomeRefresh, dg.AssetCheckResult, int]:
    """Read, then compute a part of instruments at a time while a worker thread writes the
    part before (the database's ingest, ~2.5 s for a year, overlaps the computing) and
    another reads the next part's candles, then run the contract on every recomputed row:
    the one transaction commits only if it holds."""
    parts: list[RefreshPart] = []
    with (
        ThreadPoolExecutor(1, thread_name_prefix="outcome-writer") as writer,
        engine.connect() as reading,
        engine.connect() as connection,
    ):
        reads = read_refresh(reading, since, until, now, recompute_decided=recompute_decided)
        transaction = connection.begin()
        writes = []
        for part in refresh_parts(reading, reads, rule, now):
            parts.append(part)
            writes.append(writer.submit(replace_changed, connection, part))
        refresh = whole_refresh(reads, parts)
        contract = contract_check(
            SignalOutcomeFrame,
            refresh.fresh,
            asset_key="signal_outcomes",
            check_name=OUTCOME_CONTRACT,
        )
        written = sum(w.result() for w in writes)
        if contract.passed:
            transaction.commit()
        else:
            transaction.rollback()
    return refresh, contract, written


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
    context: dg.AssetExecutionContext,
    config: OutcomeRunConfig,
    database: DatabaseResource,
    app_config: ConfigResource,
) -> dg.MaterializeResult:
    """What every signal of the window (both sources) did after it fired, from candles
    closed by now: the actual trade and, for MTF signals, the market and candidate entries
    (``alphapulse_dagster/analytics``). Settled signals (every outcome decided before the
    last day of data) are not re-read; only the rows that changed are written
    (``analytics/outcome_refresh.py``). The contract (exit after fill, R from the prices,
    MFE/MAE ≥ 0) must hold before anything is written; a decided outcome that changed when
    re-read fails the ERROR check. Each day partition gets its own figures."""
    since, until = asset_window(context)
    engine = database.get_engine()
    rule = trade_rule(app_config.load())
    with without_gc_pauses():
        refresh, contract, written = _refresh_outcomes(
            engine, since, until, rule, run_now(context), config.recompute_decided
        )
    changed = changed_decisions(refresh.previous, refresh.fresh)
    stable = dg.AssetCheckResult(
        asset_key="signal_outcomes",
        check_name=DECIDED_OUTCOMES_UNCHANGED,
        passed=changed.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "decided_before": int(refresh.previous["status"].isin(["CLOSED", "NOT_FILLED"]).sum()),
            "changed": len(changed),
            "changes": dg.MetadataValue.md(changed.head(20).to_markdown() if len(changed) else "-"),
        },
    )
    if not contract.passed:
        context.log.error("signal outcomes break their contract; nothing written")
        return dg.MaterializeResult(check_results=[contract, stable])
    context.log.info(
        f"{len(refresh.fresh)} outcome rows recomputed, {written} written, "
        f"{len(refresh.window) - len(refresh.fresh)} settled rows kept"
    )
    by_day = outcome_figures_by_day(refresh.window, refresh.rows_to_write)
    for day in context.partition_keys:
        context.add_asset_metadata(by_day.get(day, _NO_OUTCOMES), partition_key=day)
    return dg.MaterializeResult(check_results=[contract, stable])


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
    entry strategy, entry mode and source, and the paired refined-vs-market ΔR
    (``analytics/strategy_performance.py``). Each day partition gets its own figures."""
    since, until = asset_window(context)
    engine = database.get_engine()
    with engine.connect() as connection:
        outcomes = load_outcomes(connection, since, until, columns=PERFORMANCE_COLUMNS)
    days = [datetime.strptime(d, DAY_FORMAT).replace(tzinfo=UTC) for d in days_in(since, until)]
    rows = daily_rows(outcomes, days, run_now(context))
    write_daily_rows(engine, rows, since, until)
    by_day = performance_figures_by_day(rows)
    for day in context.partition_keys:
        context.add_asset_metadata(by_day.get(day, _NO_PERFORMANCE), partition_key=day)
    return dg.MaterializeResult()


_NO_PERFORMANCE = {
    "dagster/row_count": 0, "closed_trades": 0, "expectancy_r": 0.0, "win_rate": 0.0,
    "fill_rate": 0.0, "paired_n": 0, "paired_delta_r": 0.0,
}  # fmt: skip


def performance_figures_by_day(rows: list[dict]) -> dict[str, dict]:
    """Each day's own figures from its ``strategy_performance`` rows: rows, closed trades,
    and expectancy, win rate and fill rate over every source (weighted by each source's N),
    and the day's paired ΔR with its N."""
    out: dict[str, dict] = {}
    for row in rows:
        day = row["day"].strftime(DAY_FORMAT)
        figures = out.setdefault(day, {**_NO_PERFORMANCE, "_weights": {}})
        figures["dagster/row_count"] += 1
        if row["group_by"] == "source":
            figures["closed_trades"] += row["n"]
            for name in ("expectancy_r", "win_rate", "fill_rate"):
                if row[name] is not None:
                    total, weight = figures["_weights"].get(name, (0.0, 0))
                    figures["_weights"][name] = (total + row[name] * row["n"], weight + row["n"])
        elif row["group_by"] == "paired":
            figures["paired_n"] = row["n"]
            figures["paired_delta_r"] = row["expectancy_r"] or 0.0
    for figures in out.values():
        for name, (total, weight) in figures.pop("_weights").items():
            figures[name] = total / weight if weight else 0.0
    return out


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
    open, decided within the last day (``RECHECK``) or not yet evaluated (MTF signals, and
    registry signals with an entry on an instrument that has candles), else today."""
    o, s, r = signal_outcomes.c, ai_signals_mtf.c, signals.c
    horizon = today - timedelta(days=FOLLOW_DAYS)
    with database.get_engine().connect() as connection:
        open_outcome = connection.execute(
            select(func.min(o.signal_time)).where(o.status == "OPEN", o.signal_time >= horizon)
        ).scalar()
        # decided within the last day: re-read once more against the candles after (the check)
        just_decided = connection.execute(
            select(func.min(o.signal_time)).where(
                o.exit_at >= today - RECHECK, o.signal_time >= horizon
            )
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
    found = [
        t
        for t in (open_outcome, just_decided, unevaluated_mtf, unevaluated_registry)
        if t is not None
    ]
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
