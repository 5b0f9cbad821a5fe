"""Hybrid sync assets (group ``hybrid_sync``): thin adapters over ``alphapulse_dagster``'s
``sync_cycle`` steps — the same code ``alphapulse sync`` runs.

``signal_events`` (observable source: the webhook-landed log) → ``signal_lifecycle`` (the
registry projection + inferred expiries) → ``reconciled_signals`` (tiers 0–3) →
``gap_report`` (open gaps after the best tier was applied — what the API serves) →
``signal_health`` (the system report). Each writing asset returns ``MaterializeResult``
with numeric metadata; each step holds the sync lock while it writes, and the job's run tag
``alphapulse/sync`` is limited to one run at a time by the run queue (see README).
"""

import json
import time

import dagster as dg
import pandas as pd
import pandera.errors
from sqlalchemy import func, select

from alphapulse_dagster.db.tables import signal_events, signal_gaps, sync_audit_log
from alphapulse_dagster.sync.gaps import GAP_TYPES
from alphapulse_dagster.sync.health import latest_health
from alphapulse_dagster.sync.sync_cycle import (
    gap_step,
    health_step,
    lifecycle_step,
    reconcile_step,
    sync_lock,
)
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from schemas.gap_report import GapReportSchema
from sensors.hybrid_sync import (
    SYNC_JOB_NAME,
    SYNC_RUN_TAG,
    hybrid_sync_schedule,
    signal_created_sensor,
)

GROUP = "hybrid_sync"
LOCK_WAIT_SECONDS = 120.0
CHECK_GAP_REPORT_CONTRACT = "gap_report_contract"
CHECK_HEALTH_THRESHOLDS = "health_thresholds"
CHECK_MONOTONICITY = "reconciliation_monotonicity"


class SyncScope(dg.Config):
    """Which signals a run handles: ``signal_ids`` (the sensor's batch) plus everything with
    new events; ``full`` = every signal. Empty = a scheduled incremental cycle."""

    signal_ids: list[str] = []
    full: bool = False

    def ids(self) -> list[str] | None:
        return list(self.signal_ids) if self.signal_ids else None


@dg.observable_source_asset(
    name="signal_events",
    group_name=GROUP,
    required_resource_keys={"database"},
    tags={"dagster/kind/sql": ""},
    description="The append-only lifecycle log written by the webhook receiver and the MTF "
    "pipeline. Observation: the latest event_id (its data version) and the event count.",
)
def signal_events_source(context: dg.AssetExecutionContext) -> dg.ObserveResult:
    engine = context.resources.database.get_engine()
    with engine.connect() as conn:
        head, count = conn.execute(select(func.max(signal_events.c.event_id), func.count())).one()
    return dg.ObserveResult(
        data_version=dg.DataVersion(str(head or 0)),
        metadata={"max_event_id": int(head or 0), "events": int(count or 0)},
    )


@dg.asset(
    group_name=GROUP,
    deps=["signal_events"],
    kinds={"python", "sql"},
)
def signal_lifecycle(
    context: dg.AssetExecutionContext,
    config: SyncScope,
    database: DatabaseResource,
    app_config: ConfigResource,
) -> dg.MaterializeResult:
    """The ``signals`` registry as a fold of ``signal_events`` (event-time order), caught
    up past its cursor; PENDING signals past their window get an inferred EXPIRED event."""
    engine = database.get_engine()
    with sync_lock(engine, context.run_id, LOCK_WAIT_SECONDS):
        # the projection alone: reconciliation is the next asset's (``run_sync`` fuses
        # the two writes; here each asset's metadata describes its own step)
        result = lifecycle_step(
            engine,
            app_config.load(),
            run_now(context),
            context.run_id,
            config.ids(),
            config.full,
            reconcile=False,
        )
    projection = result.projection
    return dg.MaterializeResult(
        metadata={
            "signals_touched": projection.signals_touched,
            "rows_inserted": projection.rows_inserted,
            "rows_updated": projection.rows_updated,
            "reopened": projection.reopened,
            "expired": len(result.expired),
            "last_event_id": projection.last_event_id,
        }
    )


@dg.asset(group_name=GROUP, deps=[signal_lifecycle], kinds={"python", "sql"})
def reconciled_signals(
    context: dg.AssetExecutionContext, config: SyncScope, database: DatabaseResource
) -> dg.MaterializeResult:
    """Missing fields filled tier by tier (0: SIGNAL_CREATED 1.0, 1: candles 1.0, 3: trade_id
    0.9, 2: calculation 0.8), with field provenance and an audit row per change."""
    engine = database.get_engine()
    with sync_lock(engine, context.run_id, LOCK_WAIT_SECONDS):
        result = reconcile_step(engine, run_now(context), context.run_id, config.ids(), config.full)
    metadata: dict[str, int] = {
        "signals_seen": result.signals_seen,
        "signals_changed": result.signals_changed,
        "fields_changed": result.fields_changed,
    }
    metadata.update({f"tier_{tier}_fields": n for tier, n in sorted(result.by_tier.items())})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, deps=[reconciled_signals], kinds={"python", "sql"})
def gap_report(
    context: dg.AssetExecutionContext,
    config: SyncScope,
    database: DatabaseResource,
    app_config: ConfigResource,
) -> dg.MaterializeResult:
    """Open gaps per signal (nine types, weight and kind from config) in ``signal_gaps``;
    per-signal health score in ``signals.health_score``."""
    engine = database.get_engine()
    with sync_lock(engine, context.run_id, LOCK_WAIT_SECONDS):
        result = gap_step(
            engine, app_config.load(), run_now(context), context.run_id, config.ids(), config.full
        )
    with engine.connect() as conn:
        rows = conn.execute(
            select(signal_gaps.c.gap_type, func.count())
            .where(signal_gaps.c.resolved_at.is_(None))
            .group_by(signal_gaps.c.gap_type)
        ).all()
    open_by_type = dict.fromkeys(GAP_TYPES, 0) | {gap_type: int(n) for gap_type, n in rows}
    metadata: dict[str, int] = {
        "open_gaps": sum(open_by_type.values()),
        "gaps_opened": result.opened,
        "gaps_resolved": result.resolved,
        "signals_scanned": result.signals_scanned,
    }
    metadata.update({f"gaps_{name}": n for name, n in open_by_type.items()})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, deps=[gap_report], kinds={"python", "sql"})
def signal_health(
    context: dg.AssetExecutionContext, database: DatabaseResource, app_config: ConfigResource
) -> dg.MaterializeResult:
    """The system health report (SPEC §9), appended to ``signal_health_metrics``."""
    report = health_step(database.get_engine(), app_config.load(), run_now(context), context.run_id)
    context.log.info(json.dumps(sync_run_summary(context, report.as_api()), sort_keys=True))
    metadata: dict[str, float | int] = {
        "health_score": report.health_score,
        "total_gaps": report.total_gaps,
        "signals": report.signals,
        "manual_intervention": report.manual_intervention,
    }
    if report.signal_coverage is not None:
        metadata["signal_coverage"] = report.signal_coverage
    if report.data_confidence is not None:
        metadata["data_confidence"] = report.data_confidence
    return dg.MaterializeResult(metadata=metadata)


def sync_run_summary(context: dg.AssetExecutionContext, health: dict) -> dict:
    """The run's one structured summary line (logged by the last step): the numeric
    metadata every earlier step of this run materialised, the health report, the trigger
    and the seconds since the run started."""
    summary: dict = {
        "event": "sync_run_summary",
        "run_id": context.run_id,
        "trigger": context.run.tags.get("alphapulse/trigger")
        or context.run.tags.get("dagster/schedule_name", "manual"),
    }
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        step = materialization.asset_key.to_user_string()
        summary[step] = {
            key: value.value
            for key, value in materialization.metadata.items()
            if isinstance(value.value, int | float)
        }
    stats = context.instance.get_run_stats(context.run_id)
    if stats.start_time:
        summary["seconds"] = round(time.time() - stats.start_time, 3)
    summary["health"] = health
    return summary


# --- checks -------------------------------------------------------------------------------


def open_gap_frame(database: DatabaseResource) -> pd.DataFrame:
    columns = ["signal_id", "gap_type", "kind", "weight", "fillable", "detected_at"]
    with database.get_engine().connect() as conn:
        rows = conn.execute(
            select(*(signal_gaps.c[name] for name in columns)).where(
                signal_gaps.c.resolved_at.is_(None)
            )
        ).all()
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"weight": "float64", "fillable": "bool"})


@dg.asset_check(asset=gap_report, name=CHECK_GAP_REPORT_CONTRACT)
def gap_report_contract(database: DatabaseResource) -> dg.AssetCheckResult:
    """The open gaps satisfy ``schemas.gap_report.GapReportSchema`` (validated lazily)."""
    frame = open_gap_frame(database)
    try:
        GapReportSchema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases.head(50)
        return dg.AssetCheckResult(
            passed=False,
            metadata={
                "failures": len(errors.failure_cases),
                "failure_cases": dg.MetadataValue.md(cases.to_markdown(index=False)),
            },
        )
    return dg.AssetCheckResult(passed=True, metadata={"open_gaps": len(frame)})


@dg.asset_check(asset=signal_health, name=CHECK_HEALTH_THRESHOLDS)
def health_thresholds(
    database: DatabaseResource, app_config: ConfigResource
) -> dg.AssetCheckResult:
    """System health score and signal coverage at or above ``hybrid_sync.health`` (WARN)."""
    thresholds = app_config.load().hybrid_sync.health
    with database.get_engine().connect() as conn:
        latest = latest_health(conn)
    if latest is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": "no health measurement yet"},
        )
    coverage = latest["signal_coverage"]
    score_ok = latest["health_score"] >= thresholds.min_health_score
    coverage_ok = coverage is None or coverage >= thresholds.min_signal_coverage
    metadata: dict[str, float] = {
        "health_score": latest["health_score"],
        "min_health_score": thresholds.min_health_score,
        "min_signal_coverage": thresholds.min_signal_coverage,
    }
    if coverage is not None:
        metadata["signal_coverage"] = coverage
    return dg.AssetCheckResult(
        passed=score_ok and coverage_ok, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
    )


def confidence_decreases(
    database: DatabaseResource, run_id: str
) -> tuple[int, list[tuple[str, str]]]:
    """(audit rows of the run, up to 50 (signal, field) whose confidence went down)."""
    with database.get_engine().connect() as conn:
        audited = conn.execute(
            select(func.count()).where(sync_audit_log.c.sync_run_id == run_id)
        ).scalar_one()
        lowered = conn.execute(
            select(sync_audit_log.c.signal_id, sync_audit_log.c.field)
            .where(
                sync_audit_log.c.sync_run_id == run_id,
                sync_audit_log.c.old_confidence.is_not(None),
                sync_audit_log.c.confidence < sync_audit_log.c.old_confidence,
            )
            .limit(50)
        ).all()
    return int(audited), [(r[0], r[1]) for r in lowered]


@dg.asset_check(asset=reconciled_signals, name=CHECK_MONOTONICITY)
def reconciliation_monotonicity(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    """No field's confidence went down in this run: every audit row of the run has
    ``confidence`` ≥ ``old_confidence`` (ERROR)."""
    audited, lowered = confidence_decreases(database, context.run.run_id)
    return dg.AssetCheckResult(
        passed=not lowered,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "audit_rows": int(audited),
            "lowered": len(lowered),
            "examples": dg.MetadataValue.json([list(r) for r in lowered]),
        },
    )


hybrid_sync_job = dg.define_asset_job(
    name=SYNC_JOB_NAME,
    selection=dg.AssetSelection.assets(
        signal_lifecycle, reconciled_signals, gap_report, signal_health
    ),
    executor_def=dg.in_process_executor,
    tags={SYNC_RUN_TAG: "true"},
    description="One hybrid-sync cycle: projection, reconciliation, gaps, health.",
)

SYNC_ASSETS = [
    signal_events_source,
    signal_lifecycle,
    reconciled_signals,
    gap_report,
    signal_health,
]
SYNC_CHECKS = [gap_report_contract, health_thresholds, reconciliation_monotonicity]

defs = dg.Definitions(
    assets=SYNC_ASSETS,
    asset_checks=SYNC_CHECKS,
    jobs=[hybrid_sync_job],
    schedules=[hybrid_sync_schedule],
    sensors=[signal_created_sensor],
)
