"""MTF signal domain: raw signals → refined entries → stored signals → MTF metrics.

The first three are one step (a ``multi_asset``): generating and refining a whole window
is one vectorised computation over every symbol, and handing DataFrames between steps
through an IO manager would only add I/O. Each still materialises as its own asset with
its own numeric metadata, and the entry checks run before anything is stored: a signal that
breaks the entry invariants is never written.
"""

import json
import time
from datetime import datetime

import dagster as dg
import pandas as pd

from alphapulse_dagster.signals.mtf_metrics import mtf_metrics as compute_mtf_metrics
from alphapulse_dagster.signals.mtf_run import (
    RAW_SIGNAL_COLUMNS,
    generate_window,
    record_window,
    trade_rule,
)
from assets.contracts import contract_check
from assets.partitions import hourly_partitions
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource
from schemas.mtf_entries import FALLBACK_PATTERNS, MtfEntryFrame, entry_sufficiency_schema

ENTRY_INVARIANTS = "entry_invariants"
ENTRY_DATA_SUFFICIENCY = "entry_data_sufficiency"
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


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "raw_signals",
            group_name="mtf_signals",
            kinds={"pandas", "numpy"},
            deps=["candles"],
            description="Signals from the model heads' consensus on signal-timeframe bars, "
            "with higher-timeframe alignment (closed HTF bars only).",
        ),
        dg.AssetSpec(
            "mtf_entries",
            group_name="mtf_signals",
            kinds={"pandas", "numpy"},
            deps=["raw_signals"],
            description="Each signal's entry refined on the entry timeframe (Fibonacci, EMA "
            "pull-back, order block, or market), with stop, targets and R:R.",
        ),
        dg.AssetSpec(
            "stored_signals",
            group_name="mtf_signals",
            kinds={"sql", "redis"},
            deps=["mtf_entries"],
            description="ai_signals_mtf + analysis history + SIGNAL_CREATED events, "
            "de-duplicated; lifecycle of earlier signals advanced to the window end.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(ENTRY_INVARIANTS, asset="mtf_entries", blocking=True),
        dg.AssetCheckSpec(ENTRY_DATA_SUFFICIENCY, asset="mtf_entries"),
    ],
    partitions_def=hourly_partitions,
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
    window = context.partition_time_window
    config = app_config.load()
    engine = database.get_engine()
    signals = generate_window(engine, config, window.start, window.end)
    generated_at = time.perf_counter()
    raw = signals[RAW_SIGNAL_COLUMNS] if len(signals) else signals
    yield dg.MaterializeResult(asset_key="raw_signals", metadata=_raw_metadata(raw))

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
    yield dg.MaterializeResult(asset_key="mtf_entries", metadata=_entry_metadata(signals))
    yield invariants
    yield sufficiency
    if not invariants.passed:
        raise dg.Failure(
            "refined entries break the entry invariants; nothing stored",
            metadata=invariants.metadata,
        )

    cache = signal_cache.get_cache()
    record = record_window(engine, cache, signals, window.end, trade_rule(config), run_now(context))
    stats, lifecycle = record.store, record.lifecycle
    done = time.perf_counter()
    entries = _entry_metadata(signals)
    # one structured line per run: grep-able, parseable by the log pipeline
    context.log.info(
        json.dumps(
            {
                "event": "mtf_run_summary",
                "run_id": context.run_id,
                "window_start": window.start.isoformat(),
                "window_end": window.end.isoformat(),
                "generated": len(signals),
                "stored": stats.stored,
                "duplicates_skipped": stats.duplicates_skipped,
                "already_stored": stats.already_stored,
                "confirmed": lifecycle.confirmed,
                "closed": lifecycle.closed,
                "expired": lifecycle.expired,
                "still_pending": lifecycle.still_pending,
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
    yield dg.MaterializeResult(
        asset_key="stored_signals",
        metadata={
            "dagster/row_count": stats.stored,
            "stored": stats.stored,
            "duplicates_skipped": stats.duplicates_skipped,
            "already_stored": stats.already_stored,
            "confirmed": lifecycle.confirmed,
            "closed": lifecycle.closed,
            "expired": lifecycle.expired,
            "still_pending": lifecycle.still_pending,
            "redis_errors": cache.stats.errors,
        },
    )


@dg.asset(
    key="mtf_metrics",
    group_name="mtf_signals",
    kinds={"sql"},
    deps=["stored_signals"],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def mtf_metrics(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """The desk's MTF monitoring figures as of the window end (see ``mtf_metrics.py``)."""
    as_of: datetime = context.partition_time_window.end
    with database.get_engine().connect() as connection:
        figures = compute_mtf_metrics(connection, as_of)
    numeric = {k: v for k, v in figures.items() if isinstance(v, int | float) and v is not None}
    return dg.MaterializeResult(
        metadata={
            **numeric,
            "strategy_distribution": dg.MetadataValue.json(figures["strategy_distribution"]),
            "fallbacks": dg.MetadataValue.json(figures["fallbacks"]),
        }
    )


mtf_signal_job = dg.define_asset_job(
    "mtf_signal_job",
    executor_def=dg.in_process_executor,  # small hourly job: no process per step
    selection=dg.AssetSelection.assets(
        "candles", "raw_signals", "mtf_entries", "stored_signals", "mtf_metrics"
    ),
    partitions_def=hourly_partitions,
    tags=MTF_RUN_TAGS,
)

# every signal bar closes on the hour grid (1h, 4h, 1d are all whole hours): run the
# partition that just closed, a minute after the hour so the last bar is complete
mtf_signal_schedule = dg.build_schedule_from_partitioned_job(
    mtf_signal_job, name="mtf_signal_schedule", minute_of_hour=1
)


defs = dg.Definitions(
    assets=[mtf_pipeline, mtf_metrics],
    jobs=[mtf_signal_job],
    schedules=[mtf_signal_schedule],
)
