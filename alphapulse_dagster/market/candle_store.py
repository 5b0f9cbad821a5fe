"""The ``candles`` table: idempotent upsert and windowed reads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.tables import candles
from alphapulse_dagster.market.resample import OHLCV

_BATCH = 5_000


def _records(bars: pd.DataFrame, timeframe: str) -> list[dict[str, Any]]:
    frame = bars[["symbol", "open_time", *OHLCV]]
    return [
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "open_time": open_time.to_pydatetime(),
            "open": o,
            "high": h,
            "low": low,
            "close": c,
            "volume": v,
        }
        for symbol, open_time, o, h, low, c, v in frame.itertuples(index=False, name=None)
    ]


def upsert_candles(connection: Connection, bars: pd.DataFrame, timeframe: str) -> int:
    """Insert or replace ``bars`` (long frame) for ``timeframe``; returns rows written.
    Re-running with the same bars leaves the table unchanged (idempotent)."""
    if bars.empty:
        return 0
    records = _records(bars, timeframe)
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    for offset in range(0, len(records), _BATCH):
        chunk = records[offset : offset + _BATCH]
        statement = insert(candles)
        statement = statement.on_conflict_do_update(
            index_elements=["symbol", "timeframe", "open_time"],
            set_={c: statement.excluded[c] for c in OHLCV},
        )
        connection.execute(statement, chunk)
    return len(records)


def load_candles(
    connection: Connection,
    symbols: Iterable[str],
    timeframe: str,
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """Bars of ``timeframe`` with open time in ``[start, end)`` for ``symbols``."""
    query = (
        select(candles.c.symbol, candles.c.open_time, *(candles.c[c] for c in OHLCV))
        .where(
            candles.c.symbol.in_(list(symbols)),
            candles.c.timeframe == timeframe,
            candles.c.open_time >= start,
            candles.c.open_time < end,
        )
        .order_by(candles.c.symbol, candles.c.open_time)
    )
    rows = connection.execute(query).all()
    frame = pd.DataFrame(rows, columns=["symbol", "open_time", *OHLCV])
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    return frame
