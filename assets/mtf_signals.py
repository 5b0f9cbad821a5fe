"""MTF signal domain: raw signals → refined entries → stored signals → MTF metrics.

The first three are one step (a ``multi_asset``): generating and refining a whole window
is one vectorised computation over every symbol, and handing DataFrames between steps
through an IO manager would only add I/O. Each still materialises as its own asset with
its own numeric metadata, and the entry checks run before anything is stored: a signal that
breaks the entry invariants is never written.

A day partition holds the signals whose signal bar closes that UTC day. A run over many
days (a single-run backfill) reports each day's own figures on that day's partition.
"""

import json
import time
from datetime import timedelta
from typing import Any

import dagster as dg
import pandas as pd

from alphapulse_dagster.signals.mtf_lifecycle import LifecycleStats
from alphapulse_dagster.signals.mtf_metrics import FALLBACK_PATTERNS as METRIC_FALLBACKS
from alphapulse_dagster.signals.mtf_metrics import mtf_metrics_by_day
from alphapulse_dagster.signals.mtf_run import (
    WindowRecord,
    generate_window,
    record_window,
    trade_rule,
)
from alphapulse_dagster.signals.signal_parity import signal_parity
from alphapulse_dagster.signals.signal_store import StoreStats
from assets.contracts import contract_check
from assets.market_data import OWNERS
from assets.partitions import asset_window, daily_partitions
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource
from schemas.mtf_entries import FALLBACK_PATTERNS, MtfEntryFrame, entry_sufficiency_schema

ENTRY_INVARIANTS = "entry_invariants"
ENTRY_DATA_SUFFICIENCY = "entry_data_sufficiency"
SIGNAL_PARITY = "signal_parity"
# a day without a signal: zero counts, no averages (None is left out of the metadata)
_NO_SIGNAL_METRICS: dict[str, Any] = {
    "total_signals": 0,
    "signals_last_24h": 0,
    "duplicates_skipped": 0,
    "strategy_distribution": {},
    "fallbacks": dict.fromkeys(METRIC_FALLBACKS, 0),
}
MTF_RUN_TAGS = {"alphapulse/mtf": "true"}


def _mean(frame: pd.DataFrame, column: str) -> float:
    return float(frame[column].mean()) if len(frame) else 0.0


def _raw_metadata(signals: pd.DataFrame) -> dict:
    return {
        "signals": len(signals),
        "long": int((signals["direction"] == "LONG").sum()) if len(signals) else 0,
        "short": int((signals["direction"] == "SHORT").sum()) if len(signals) else 0,
        "avg_signal_confidence": _mean(signals, "signal_confidence"),
        "symbols": int(signals["symbol"].nunique()) if len(signals) else 0,
    }


def _entry_metadata(entries: pd.DataFrame) -> dict:
    fallbacks = int(entries["entry_pattern"].isin(FALLBACK_PATTERNS).sum()) if len(entries) else 0
    refined = int((entries["entry_strategy"] != "MARKET_ENTRY").sum()) if len(entries) else 0
    return {
        "entries": len(entries),
        "refined": refined,
        "fallbacks": fallbacks,
        "fallback_rate": fallbacks / len(entries) if len(entries) else 0.0,
        "avg_risk_reward_ratio": _mean(entries, "risk_reward_ratio"),
        "avg_entry_confidence": _mean(entries, "entry_confidence"),
        "mean_entry_improvement_bps": _mean(entries, "entry_improvement_bps"),
    }


def _day_keys(signals: pd.DataFrame) -> pd.Series:
    return signals["timestamp"].dt.strftime("%Y-%m-%d") if len(signals) else pd.Series()


def _per_day(context: dg.AssetExecutionContext, asset_key: str, metadata_by_day: dict) -> None:
    for day in context.partition_keys:
        context.add_asset_metadata(metadata_by_day[day], asset_key=asset_key, partition_key=day)


def _split(signals: pd.DataFrame, days: list[str]) -> dict[str, pd.DataFrame]:
    keys = _day_keys(signals)
    return {day: signals[keys == day] if len(signals) else signals for day in days}


def _stored_metadata(record: WindowRecord, redis_errors: int) -> dict:
    return {
        "dagster/row_count": record.store.stored,
        "stored": record.store.stored,
        "duplicates_skipped": record.store.duplicates_skipped,
        "already_stored": record.store.already_stored,
        "confirmed": record.lifecycle.confirmed,
        "closed": record.lifecycle.closed,
        "expired": record.lifecycle.expired,
        "still_pending": record.lifecycle.still_pending,
        "redis_errors": redis_errors,
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "raw_signals",
            group_name="mtf_signals",
            kinds={"pandas", "numpy"},
            owners=OWNERS,
            deps=["candles"],
            description="Directional signals (LONG/SHORT) of every enabled symbol whose "
            "signal bar closes in the partition's UTC day: the model heads' consensus on "
            "signal-timeframe bars, with higher-timeframe alignment from closed bars only.",
        ),
        dg.AssetSpec(
            "mtf_entries",
            group_name="mtf_signals",
            kinds={"pandas", "numpy"},
            owners=OWNERS,
            deps=["raw_signals"],
            description="Each signal's entry refined on the entry timeframe to a key level "
            "(Fibonacci retracement, EMA pull-back, order block) or taken at market, with "
            "stop, targets and risk:reward. Blocking check: entry invariants.",
        ),
        dg.AssetSpec(
            "stored_signals",
            group_name="mtf_signals",
            kinds={"sql", "redis"},
            owners=OWNERS,
            deps=["mtf_entries"],
            description="The day's signals written to ai_signals_mtf with their entry "
            "analysis and a SIGNAL_CREATED event each, never two active signals per symbol "
            "and direction; earlier signals' fills, exits and expiries advanced to the "
            "day's end (or now, for the day in progress). Re-running a day stores nothing "
            "twice.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(ENTRY_INVARIANTS, asset="mtf_entries", blocking=True),
        dg.AssetCheckSpec(ENTRY_DATA_SUFFICIENCY, asset="mtf_entries"),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def mtf_pipeline(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    app_config: ConfigResource,
    signal_cache: SignalCacheResource,
):
    """Generate, refine and store the signals whose signal bar closes in the window."""
    started = time.perf_counter()
    start, window_end = asset_window(context)
    now = run_now(context)
    end = min(window_end, now)  # the day in progress: only bars closed by now
    config = app_config.load()
    engine = database.get_engine()
    signals = generate_window(engine, config, start, end)
    generated_at = time.perf_counter()
    by_day = _split(signals, list(context.partition_keys))
    _per_day(context, "raw_signals", {d: _raw_metadata(f) for d, f in by_day.items()})
    yield dg.MaterializeResult(asset_key="raw_signals")

    invariants = contract_check(
        MtfEntryFrame, signals, asset_key="mtf_entries", check_name=ENTRY_INVARIANTS
    )
    sufficiency = contract_check(
        entry_sufficiency_schema(config.mtf.max_fallback_share),
        signals,
        asset_key="mtf_entries",
        check_name=ENTRY_DATA_SUFFICIENCY,
        severity=dg.AssetCheckSeverity.WARN,
    )
    _per_day(context, "mtf_entries", {d: _entry_metadata(f) for d, f in by_day.items()})
    yield dg.MaterializeResult(asset_key="mtf_entries")
    yield invariants
    yield sufficiency
    if not invariants.passed:
        raise dg.Failure(
            "refined entries break the entry invariants; nothing stored",
            metadata=invariants.metadata,
        )

    cache = signal_cache.get_cache()
    record = record_window(engine, cache, signals, end, trade_rule(config), now)
    done = time.perf_counter()
    empty = WindowRecord(StoreStats(), LifecycleStats())
    _per_day(
        context,
        "stored_signals",
        {
            d: _stored_metadata(record.by_day.get(d, empty), cache.stats.errors)
            for d in context.partition_keys
        },
    )
    entries = _entry_metadata(signals)
    # one structured line per run: grep-able, parseable by the log pipeline
    context.log.info(
        json.dumps(
            {
                "event": "mtf_run_summary",
                "run_id": context.run_id,
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "days": len(context.partition_keys),
                "generated": len(signals),
                "stored": record.store.stored,
                "duplicates_skipped": record.store.duplicates_skipped,
                "already_stored": record.store.already_stored,
                "confirmed": record.lifecycle.confirmed,
                "closed": record.lifecycle.closed,
                "expired": record.lifecycle.expired,
                "still_pending": record.lifecycle.still_pending,
                "fallback_rate": round(entries["fallback_rate"], 4),
                "avg_risk_reward_ratio": round(entries["avg_risk_reward_ratio"], 4),
                "redis_configured": cache.configured,
                "redis_errors": cache.stats.errors,
                "generate_seconds": round(generated_at - started, 3),
                "store_seconds": round(done - generated_at, 3),
                "seconds": round(done - started, 3),
            },
            sort_keys=True,
        )
    )
    yield dg.MaterializeResult(asset_key="stored_signals")


@dg.asset(
    key="mtf_metrics",
    group_name="mtf_signals",
    kinds={"sql"},
    owners=OWNERS,
    deps=["stored_signals"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def mtf_metrics(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """The desk's MTF monitoring figures for the signals of each UTC day: strategy
    distribution, mean entry and signal confidence, mean risk:reward, refinement success
    and fill rates (%), mean entry improvement over market (bps) and fallbacks."""
    start, end = asset_window(context)
    with database.get_engine().connect() as connection:
        by_day = mtf_metrics_by_day(connection, run_now(context), start, end)
    for day in context.partition_keys:
        figures = by_day.get(day) or _NO_SIGNAL_METRICS
        numeric = {k: v for k, v in figures.items() if isinstance(v, int | float)}
        context.add_asset_metadata(
            {
                **numeric,
                "strategy_distribution": dg.MetadataValue.json(figures["strategy_distribution"]),
                "fallbacks": dg.MetadataValue.json(figures["fallbacks"]),
            },
            partition_key=day,
        )
    return dg.MaterializeResult()


@dg.asset_check(
    asset="stored_signals",
    name=SIGNAL_PARITY,
    description="Yesterday's stored signals (UTC day) recomputed from the stored candles: "
    "the share reproduced exactly in every pinned column. Below 100% is a WARN naming the "
    "signals that differ.",
)
def signal_parity_check(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource, app_config: ConfigResource
) -> dg.AssetCheckResult:
    """Live/backfill parity of yesterday's signals (see ``signals/signal_parity.py``)."""
    today = run_now(context).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    report = signal_parity(database.get_engine(), app_config.load(), yesterday, today)
    return dg.AssetCheckResult(
        passed=not report.misses,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "day": yesterday.strftime("%Y-%m-%d"),
            "stored": report.stored,
            "reproduced": report.reproduced,
            "share_reproduced": report.share,
            "misses": dg.MetadataValue.json(report.misses),
        },
    )


mtf_signal_job = dg.define_asset_job(
    "mtf_signal_job",
    executor_def=dg.in_process_executor,  # small hourly job: no process per step
    # the day's pipeline and its own checks; signal_parity runs daily in its own job
    selection=dg.AssetSelection.assets(
        "candles", "raw_signals", "mtf_entries", "stored_signals", "mtf_metrics"
    )
    - dg.AssetSelection.checks(signal_parity_check),
    partitions_def=daily_partitions,
    tags=MTF_RUN_TAGS,
)


signal_parity_job = dg.define_asset_job(
    "signal_parity_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.checks(signal_parity_check),
)

defs = dg.Definitions(
    assets=[mtf_pipeline, mtf_metrics],
    asset_checks=[signal_parity_check],
    jobs=[mtf_signal_job, signal_parity_job],
)
