"""Market data domain: the ``candles`` asset and its blocking contract check."""

import dagster as dg
import pandas as pd

from alphapulse_dagster.market.candle_refresh import derive_and_store, fetch_window
from assets.contracts import contract_check
from assets.partitions import hourly_partitions
from resources import ConfigResource, DatabaseResource
from resources.market_data import MarketDataResource
from schemas.candles import CandleFrame

CANDLE_INTEGRITY = "candle_integrity"


@dg.asset(
    key="candles",
    group_name="market_data",
    kinds={"pandas", "sql"},
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec(CANDLE_INTEGRITY, asset="candles", blocking=True)],
)
def candles(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    app_config: ConfigResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    """OHLCV bars of every enabled symbol for the partition window (bar OPEN times, UTC).

    Fetches only the finest timeframe each symbol needs and derives the coarser ones by
    UTC-aligned resampling; upserts idempotently. The fetched bars must pass the candle
    contract (blocking): a frame that fails it is not stored and downstream assets do not
    run. Missing bars are counted in the metadata, never forward-filled.
    """
    window = context.partition_time_window
    config = app_config.load()
    engine = database.get_engine()
    fine, needed = fetch_window(
        lambda exchange: market_data.source_for(exchange, engine), config, window.start, window.end
    )
    check = contract_check(CandleFrame, fine, asset_key="candles", check_name=CANDLE_INTEGRITY)
    if not check.passed:
        context.log.error("candle contract failed; nothing stored for %s", window)
        return dg.MaterializeResult(
            metadata={"rows_written": 0, "symbols": len(needed), "fine_bars": len(fine)},
            check_results=[check],
        )
    stats = derive_and_store(engine, fine, needed, window.start, window.end)
    per_tf = {f"rows_{tf}": n for tf, n in sorted(stats.rows_by_timeframe.items())}
    context.log.info(
        "candles %s..%s: %d rows, %d missing bars",
        window.start,
        window.end,
        stats.rows_written,
        stats.missing_bars,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stats.rows_written,
            "rows_written": stats.rows_written,
            "symbols": stats.symbols,
            "fine_bars": stats.fine_bars,
            "missing_bars": stats.missing_bars,
            **per_tf,
            "missing_by_symbol": dg.MetadataValue.json(stats.missing_by_symbol),
            "window_start": dg.MetadataValue.timestamp(pd.Timestamp(window.start)),
        },
        check_results=[check],
    )


defs = dg.Definitions(assets=[candles])
