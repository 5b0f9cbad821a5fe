"""Market data as a Dagster resource: the CSV folder, the database, or an exchange."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from alphapulse_dagster.market.market_data import (
    CsvMarketData,
    DatabaseMarketData,
    ExchangeMarketData,
    MarketDataSource,
)
from alphapulse_dagster.paths import sample_market_data_dir


class MarketDataResource(dg.ConfigurableResource):
    """Where candles come from, per symbol: its ``exchange`` in ``symbol_config.yaml``.
    ``csv`` reads ``csv_dir`` (``ALPHAPULSE_MARKET_DATA_DIR``; empty = the bundled
    sample), ``database`` reads the ``candles`` table, anything else is a ccxt exchange id
    (``pip install 'alphapulse-dagster[exchange]'``)."""

    csv_dir: str = Field(default="", description="folder of {SYMBOL}_{timeframe}.csv files")
    _exchanges: dict[str, MarketDataSource] = PrivateAttr(default_factory=dict)

    def source_for(self, exchange: str, engine: Engine) -> MarketDataSource:
        if exchange == "csv":
            return CsvMarketData(self.csv_dir or os.fspath(sample_market_data_dir()))
        if exchange == "database":
            return DatabaseMarketData(engine)
        if exchange not in self._exchanges:  # one client (and rate limiter) per exchange
            self._exchanges[exchange] = ExchangeMarketData(exchange)
        return self._exchanges[exchange]
