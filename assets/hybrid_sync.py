"""Hybrid sync assets (group ``hybrid_sync``): one Dagster step over the same cycle as
``alphapulse sync`` (:func:`alphapulse_dagster.sync.sync_cycle.run_sync`).

``signal_events`` (observed: the append-only log that the webhook receiver and the MTF
pipeline write) → ``signal_lifecycle`` (the registry as a fold of the log, plus inferred
expiries) → ``reconciled_signals`` (missing fields filled tier by tier) → ``gap_report``
(the open gaps that remain) → ``signal_health`` (the system report).

The four assets are one ``@multi_asset``: a cycle writes each registry row once, with its
fold, its reconciliation and its health score, so the steps cannot run apart. The step
yields one ``MaterializeResult`` per asset, each with that part of the cycle's numbers.
Runs never overlap: the ``hybrid_sync`` concurrency pool, the run queue's limit on the
``alphapulse/sync`` tag, and the cycle's own database lock.
"""

import json
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import timedelta

import dagster as dg
import pandas as pd
from sqlalchemy import func, select

from alphapulse_dagster.db.tables import signal_events, sync_audit_log
from alphapulse_dagster.sync.gaps import OPENED_COLUMNS
from alphapulse_dagster.sync.health import latest_health
from alphapulse_dagster.sync.sync_cycle import SyncReport, SyncRequest, run_sync
from assets.contracts import contract_check
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from schemas.gap_report import GapReportSchema
from schemas.sync_health import AUDIT_MONOTONICITY, health_thresholds_schema
from sensors.hybrid_sync import (
    SYNC_JOB_NAME,
    SYNC_POOL,
    SYNC_RUN_TAG,
    SYNC_STEP,
    hybrid_sync_schedule,
    signal_created_sensor,
)

GROUP = "hybrid_sync"
OWNERS = ["team:alphapulse-desk"]
LOCK_WAIT_SECONDS = 120.0
CHECK_GAP_REPORT_CONTRACT = "gap_report_contract"
CHECK_HEALTH_THRESHOLDS = "health_thresholds"
CHECK_MONOTONICITY = "reconciliation_monotonicity"
# the schedule runs every 2 minutes: a report older than 10 means the daemon or the sync
# has stopped
HEALTH_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(minutes=10), warn_window=timedelta(minutes=6)
)


class SyncScope(dg.Config):
    """Which signals a run handles: ``signal_ids`` (the sensor's batch) plus everything with
    new events; ``full`` = every signal; ``rescan`` = also re-detect the gaps of every
    settled signal (after a gap rule or weight changed). Empty = a scheduled cycle."""

    signal_ids: list[str] = []
    full: bool = False
    rescan: bool = False

    def ids(self) -> list[str] | None:
        return list(self.signal_ids) if self.signal_ids else None


def _observe_signal_events(context: dg.AssetExecutionContext) -> dg.ObserveResult:
    engine = context.resources.database.get_engine()
    with engine.connect() as conn:
        head, count = conn.execute(select(func.max(signal_events.c.event_id), func.count())).one()
    return dg.ObserveResult(
        asset_key="signal_events",
        data_version=dg.DataVersion(str(head or 0)),
        metadata={"max_event_id": int(head or 0), "events": int(count or 0)},
    )


# ``multi_observable_source_asset`` (beta) is the observable source that takes ``deps``: the
# MTF pipeline's ``stored_signals`` appends to the log (lineage joins the two groups)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    signal_events_source = dg.multi_observable_source_asset(
        specs=[
            dg.AssetSpec(
                "signal_events",
                deps=["stored_signals"],
                group_name=GROUP,
                owners=OWNERS,
                kinds={"sql"},
                description="The append-only lifecycle log: every SIGNAL_CREATED, ENTRY, "
                "MFE_UPDATE, EXIT and CANCELLED of every signal, written by the webhook "
                "receiver and by the MTF pipeline (stored signals append their SIGNAL_CREATED). "
                "Observed: the latest event_id (its data version) and the event count.",
            )
        ],
        name="signal_events",
        required_resource_keys={"database"},
    )(_observe_signal_events)


def _spec(key: str, dep: str, description: str, **extra: object) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        deps=[dep],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"python", "sql"},
        description=description,
        **extra,  # type: ignore[arg-type]
    )


SYNC_SPECS = [
    _spec(
        "signal_lifecycle",
        "signal_events",
        "The signals registry as a fold of the event log in event-time order: status "
        "(PENDING, CONFIRMED, CLOSED, CANCELLED), entry, stop, targets and timestamps. "
        "PENDING signals past their window get an inferred EXPIRED cancellation.",
    ),
    _spec(
        "reconciled_signals",
        "signal_lifecycle",
        "Missing registry fields filled from the best source available, field by field: "
        "the SIGNAL_CREATED payload (confidence 1.0), candles since entry (MFE/MAE, 1.0), "
        "the trade id (0.9), calculation (targets at 1R/2R/3R, 0.8). Each change records "
        "its provenance and an audit row; a confidence never goes down.",
    ),
    _spec(
        "gap_report",
        "reconciled_signals",
        "What each signal still misses (nine gap types: no SIGNAL_CREATED, HTF alignment, "
        "confirmation time, entry, stop, targets, MFE update, MAE, metadata), with the "
        "configured weight and kind, and whether any source could fill it; open gaps in "
        "signal_gaps, the per-signal score (100 minus the open gaps' weights) on the "
        "signal.",
    ),
    _spec(
        "signal_health",
        "gap_report",
        "The desk's data-quality report over the last days' signals: total open gaps by "
        "type and kind, the mean per-signal health score, the share of confirmed signals "
        "that had a SIGNAL_CREATED, mean field confidence, and the gaps that need a "
        "person. Appended to signal_health_metrics; GET /health serves the latest.",
        freshness_policy=HEALTH_FRESHNESS,
    ),
]


@dg.multi_asset(
    name=SYNC_STEP,
    specs=SYNC_SPECS,
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_GAP_REPORT_CONTRACT,
            asset="gap_report",
            description="Every open gap has a known type and kind, a weight in [0, 100], "
            "and there is at most one open gap per signal and type.",
        )
    ],
    pool=SYNC_POOL,
)
def hybrid_sync_cycle(
    context: dg.AssetExecutionContext,
    config: SyncScope,
    database: DatabaseResource,
    app_config: ConfigResource,
) -> Iterator[dg.MaterializeResult]:
    """One hybrid-sync cycle, then each asset's share of it."""
    engine = database.get_engine()
    request = SyncRequest(signal_ids=config.ids(), full=config.full, rescan=config.rescan)
    report = run_sync(
        engine, app_config.load(), run_now(context), context.run_id, request, LOCK_WAIT_SECONDS
    )
    metadata = step_metadata(report)
    summary = sync_run_summary(context, metadata, report)
    context.log.info(json.dumps(summary, sort_keys=True))
    # the contract of what this cycle wrote: the gaps it opened (a cost that grows with
    # the changes, not with every open gap of the history)
    gaps_check = contract_check(
        GapReportSchema,
        gap_frame(report.gaps.opened_rows),
        asset_key="gap_report",
        check_name=CHECK_GAP_REPORT_CONTRACT,
    )
    for key, values in metadata.items():
        checks = [gaps_check] if key == "gap_report" else []
        yield dg.MaterializeResult(asset_key=key, metadata=values, check_results=checks)


def step_metadata(report: SyncReport) -> dict[str, dict[str, float | int]]:
    """Each asset's numbers from one cycle: its own counts and the seconds its part of the
    cycle took."""
    projection = report.projection
    reconciled = report.reconcile
    health = report.health
    lifecycle: dict[str, float | int] = {
        "signals_touched": projection.signals_touched,
        "rows_inserted": projection.rows_inserted,
        "rows_updated": projection.rows_updated,
        "reopened": projection.reopened,
        "expired": len(report.expired),
        "last_event_id": projection.last_event_id,
    }
    reconcile: dict[str, float | int] = {
        "signals_seen": reconciled.signals_seen,
        "signals_changed": reconciled.signals_changed,
        "fields_changed": reconciled.fields_changed,
    }
    reconcile.update({f"tier_{tier}_fields": n for tier, n in sorted(reconciled.by_tier.items())})
    gaps: dict[str, float | int] = {
        "gaps_opened": report.gaps.opened,
        "gaps_resolved": report.gaps.resolved,
        "signals_scanned": report.gaps.signals_scanned,
        "open_gaps": sum(report.open_gaps.values()),
    }
    gaps.update({f"gaps_{name}": n for name, n in report.open_gaps.items()})
    signal_health: dict[str, float | int] = {
        "health_score": health.health_score,
        "total_gaps": health.total_gaps,
        "signals": health.signals,
        "manual_intervention": health.manual_intervention,
    }
    if health.signal_coverage is not None:
        signal_health["signal_coverage"] = health.signal_coverage
    if health.data_confidence is not None:
        signal_health["data_confidence"] = health.data_confidence
    out = {
        "signal_lifecycle": lifecycle,
        "reconciled_signals": reconcile,
        "gap_report": gaps,
        "signal_health": signal_health,
    }
    for key, seconds in report.step_seconds.items():
        out[key]["seconds"] = round(seconds, 4)
    return out


def sync_run_summary(
    context: dg.AssetExecutionContext,
    metadata: dict[str, dict[str, float | int]],
    report: SyncReport,
) -> dict:
    """The run's one structured summary line: each asset's numbers, the health report,
    the trigger and the seconds since the run started."""
    summary: dict = {
        "event": "sync_run_summary",
        "run_id": context.run_id,
        "trigger": context.run.tags.get("alphapulse/trigger")
        or context.run.tags.get("dagster/schedule_name", "manual"),
        **metadata,
    }
    stats = context.instance.get_run_stats(context.run_id)
    if stats.start_time:
        summary["seconds"] = round(time.time() - stats.start_time, 3)
    summary["health"] = report.health.as_api()
    return summary


# --- checks -------------------------------------------------------------------------------

_GAP_COLUMNS = {
    "signal_id": "str",
    "gap_type": "str",
    "kind": "str",
    "weight": "float64",
    "fillable": "bool",
    "detected_at": "datetime64[us, UTC]",
}


def gap_frame(rows: Sequence[Sequence[object]]) -> pd.DataFrame:
    """Gap rows (``gaps.OPENED_COLUMNS``) as the contract's frame, with its column types
    even when there are none (an empty frame would otherwise hold ``object`` columns)."""
    frame = pd.DataFrame(list(rows), columns=list(OPENED_COLUMNS))
    frame["detected_at"] = pd.to_datetime(frame["detected_at"], utc=True)
    return frame.astype(_GAP_COLUMNS)


@dg.asset_check(asset="signal_health", name=CHECK_HEALTH_THRESHOLDS)
def health_thresholds(
    database: DatabaseResource, app_config: ConfigResource
) -> dg.AssetCheckResult:
    """The latest system health score and signal coverage are at or above the configured
    minimums (``hybrid_sync.health``); a warning, not a failure of the run."""
    thresholds = app_config.load().hybrid_sync.health
    with database.get_engine().connect() as conn:
        latest = latest_health(conn)
    if latest is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": "no health measurement yet"},
        )
    frame = pd.DataFrame(
        [{"health_score": latest["health_score"], "signal_coverage": latest["signal_coverage"]}]
    )
    result = contract_check(
        health_thresholds_schema(thresholds),
        frame,
        asset_key="signal_health",
        check_name=CHECK_HEALTH_THRESHOLDS,
        severity=dg.AssetCheckSeverity.WARN,
    )
    extra = {
        "health_score": float(latest["health_score"]),
        "min_health_score": thresholds.min_health_score,
        "min_signal_coverage": thresholds.min_signal_coverage,
    }
    if latest["signal_coverage"] is not None:
        extra["signal_coverage"] = float(latest["signal_coverage"])
    return result.with_metadata({**result.metadata, **extra})


def run_audit_frame(database: DatabaseResource, run_id: str) -> pd.DataFrame:
    """The audit rows one sync run wrote: signal, field, new and old confidence."""
    columns = ["signal_id", "field", "confidence", "old_confidence"]
    with database.get_engine().connect() as conn:
        rows = conn.execute(
            select(*(sync_audit_log.c[name] for name in columns)).where(
                sync_audit_log.c.sync_run_id == run_id
            )
        ).all()
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"confidence": "float64", "old_confidence": "float64"})


@dg.asset_check(asset="reconciled_signals", name=CHECK_MONOTONICITY)
def reconciliation_monotonicity(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    """No field's confidence went down in this run: every audit row of the run has a
    confidence at or above the one the field was held at (an error)."""
    return contract_check(
        AUDIT_MONOTONICITY,
        run_audit_frame(database, context.run.run_id),
        asset_key="reconciled_signals",
        check_name=CHECK_MONOTONICITY,
    )


hybrid_sync_job = dg.define_asset_job(
    name=SYNC_JOB_NAME,
    selection=dg.AssetSelection.assets(hybrid_sync_cycle),
    executor_def=dg.in_process_executor,
    tags={SYNC_RUN_TAG: "true"},
    description="One hybrid-sync cycle: the registry caught up with the event log, missing "
    "fields reconciled, gaps detected, the health report appended.",
)

SYNC_ASSETS = [signal_events_source, hybrid_sync_cycle]
SYNC_CHECKS = [health_thresholds, reconciliation_monotonicity]

defs = dg.Definitions(
    assets=SYNC_ASSETS,
    asset_checks=SYNC_CHECKS,
    jobs=[hybrid_sync_job],
    schedules=[hybrid_sync_schedule],
    sensors=[signal_created_sensor],
)
