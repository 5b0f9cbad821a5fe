"""Market data domain: the ``candles`` asset and its blocking contract check."""

from datetime import datetime, timedelta

import dagster as dg
import pandas as pd

from alphapulse_dagster.market.candle_refresh import RefreshStats, derive_and_store, fetch_window
from alphapulse_dagster.market.timeframes import duration
from assets.contracts import contract_check
from assets.partitions import asset_window, daily_partitions
from assets.run_clock import run_now
from resources import ConfigResource, DatabaseResource
from resources.market_data import MarketDataResource
from schemas.candles import CandleFrame

CANDLE_INTEGRITY = "candle_integrity"
OWNERS = ["team:alphapulse"]

# the hourly schedule refreshes the day in progress: two hours without a new closed bar
# (a dead feed skips the materialisation) or without a run (a stopped daemon) is stale
CANDLES_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(minutes=75)
)


def _day_metadata(stats: RefreshStats) -> dict:
    return {
        "dagster/row_count": stats.rows_written,
        "rows_written": stats.rows_written,
        "symbols": stats.symbols,
        "fine_bars": stats.fine_bars,
        "missing_bars": stats.missing_bars,
        **{f"rows_{tf}": n for tf, n in sorted(stats.rows_by_timeframe.items())},
        "missing_by_symbol": dg.MetadataValue.json(stats.missing_by_symbol),
    }


@dg.asset(
    key="candles",
    group_name="market_data",
    kinds={"pandas", "sql"},
    owners=OWNERS,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    freshness_policy=CANDLES_FRESHNESS,
    output_required=False,  # a live run with no new closed bar materialises nothing
    check_specs=[dg.AssetCheckSpec(CANDLE_INTEGRITY, asset="candles", blocking=True)],
)
def candles(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    app_config: ConfigResource,
    market_data: MarketDataResource,
):
    """OHLCV bars of every enabled symbol, one partition per UTC day of the bars' open
    time. Prices in quote currency, volume in the market's own units.

    Fetches only the finest timeframe each symbol needs (from the CSV folder, the database
    or an exchange, per symbol) and derives the coarser ones by UTC-aligned resampling;
    upserts idempotently, so a re-run of a day writes the same rows. Only closed bars are
    stored: the run for the day in progress stops at the last bar closed by now. The bars
    must pass the candle contract (blocking): a failing frame is not stored and downstream
    assets do not run. Missing bars are counted per day, never forward-filled. When the
    hourly run finds no bar closed in the past hour it records nothing, so a dead feed
    shows as stale.
    """
    start, window_end = asset_window(context)
    now = run_now(context)
    end = min(window_end, now)
    live = end < window_end
    config = app_config.load()
    engine = database.get_engine()
    fine, needed = fetch_window(
        lambda exchange: market_data.source_for(exchange, engine), config, start, end
    )
    check = contract_check(CandleFrame, fine, asset_key="candles", check_name=CANDLE_INTEGRITY)
    if live and not _closed_in_last_hour(fine, needed, now):
        context.log.warning(
            "candles: no bar closed in the hour before %s for any of %d symbols; "
            "the market-data feed may be dead. No materialisation recorded.",
            now.isoformat(),
            len(needed),
        )
        yield check  # the bars fetched are still checked; the asset is not materialised
        return
    if not check.passed:
        context.log.error("candle contract failed; nothing stored for %s..%s", start, end)
        yield dg.MaterializeResult(metadata={"rows_written": 0}, check_results=[check])
        return
    refresh = derive_and_store(engine, fine, needed, start, end)
    for day in context.partition_keys:
        context.add_asset_metadata(
            _day_metadata(refresh.by_day.get(day, RefreshStats(symbols=len(needed)))),
            partition_key=day,
        )
    context.log.info(
        "candles %s..%s: %d rows over %d days, %d missing bars",
        start,
        end,
        refresh.total.rows_written,
        len(context.partition_keys),
        refresh.total.missing_bars,
    )
    yield dg.MaterializeResult(check_results=[check])


def _closed_in_last_hour(fine: pd.DataFrame, needed: dict[str, list[str]], now: datetime) -> bool:
    """Whether any symbol has a fine bar that closed in the hour before ``now``."""
    if fine.empty:
        return False
    step = {symbol: pd.Timedelta(duration(tfs[0])) for symbol, tfs in needed.items()}
    closes = fine["open_time"] + pd.to_timedelta(fine["symbol"].map(step))
    return bool((closes > pd.Timestamp(now) - pd.Timedelta(hours=1)).any())


defs = dg.Definitions(assets=[candles])
