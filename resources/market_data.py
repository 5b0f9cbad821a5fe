"""Market data as a Dagster resource: the CSV folder, the database, or an exchange."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from alphapulse_dagster.market_data import (
    CsvMarketData,
    DatabaseMarketData,
    ExchangeMarketData,
    MarketDataSource,
)
from alphapulse_dagster.paths import sample_market_data_dir


class MarketDataResource(dg.ConfigurableResource):
    """Where candles come from. ``csv`` reads ``csv_dir`` (``ALPHAPULSE_MARKET_DATA_DIR``;
    empty = the bundled sample); ``database`` reads the ``candles`` table; ``exchange``
    uses ccxt's ``exchange_id`` (optional extra)."""

    source: Literal["csv", "database", "exchange"] = "csv"
    csv_dir: str = Field(default="", description="folder of {SYMBOL}_{timeframe}.csv files")
    exchange_id: str = Field(default="", description="ccxt exchange id, e.g. binance")

    def get_source(self, engine: Engine) -> MarketDataSource:
        if self.source == "database":
            return DatabaseMarketData(engine)
        if self.source == "exchange":
            return ExchangeMarketData(self.exchange_id)
        return CsvMarketData(self.csv_dir or os.fspath(sample_market_data_dir()))
