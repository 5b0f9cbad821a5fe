"""The ``candles`` table: idempotent upsert and windowed reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Connection, MetaData, Select, Table, and_, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.bulk import is_postgres
from alphapulse_dagster.db.columns import insert_frame, read_arrays, read_frame
from alphapulse_dagster.db.tables import candles
from alphapulse_dagster.market.bar_series import BarSeries, bar_series
from alphapulse_dagster.market.resample import OHLCV
from alphapulse_dagster.market.timeframes import duration, is_timeframe, seconds

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
    if is_postgres(connection):
        return _upsert_by_copy(connection, bars, timeframe)
    records = _records(bars, timeframe)  # SQLite: batched executemany
    for offset in range(0, len(records), _BATCH):
        chunk = records[offset : offset + _BATCH]
        statement = sqlite_insert(candles)
        statement = statement.on_conflict_do_update(
            index_elements=["symbol", "timeframe", "open_time"],
            set_={c: statement.excluded[c] for c in OHLCV},
        )
        connection.execute(statement, chunk)
    return len(records)


# a session's staging table for :func:`_upsert_by_copy` (emptied after each upsert)
_INCOMING = Table(
    "incoming_candles", MetaData(), *(Column(c.name, c.type) for c in candles.columns)
)


def _upsert_by_copy(connection: Connection, bars: pd.DataFrame, timeframe: str) -> int:
    """Postgres: the bars go in by binary ``COPY`` to a temporary table, then one
    ``INSERT … SELECT … ON CONFLICT DO UPDATE``: a year of 100 symbols' bars in seconds,
    where a row-by-row executemany takes most of a minute."""
    frame = bars[["symbol", "open_time", *OHLCV]].copy()
    frame.insert(1, "timeframe", timeframe)
    connection.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_candles (LIKE candles)"
    )
    insert_frame(connection, _INCOMING, frame)
    statement = pg_insert(candles).from_select(
        [c.name for c in candles.columns], select(*_INCOMING.c)
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["symbol", "timeframe", "open_time"],
            set_={c: statement.excluded[c] for c in OHLCV},
        )
    )
    connection.exec_driver_sql("TRUNCATE incoming_candles")
    return len(frame)


BAR_PRICES = ("open", "high", "low", "close")


def _bars_in(symbols: Iterable[str], timeframe: str, start: datetime, end: datetime) -> Any:
    """The candles of ``timeframe`` opening in ``[start, end)`` for ``symbols``."""
    c = candles.c
    return and_(
        c.symbol.in_(list(symbols)),
        c.timeframe == timeframe,
        c.open_time >= start,
        c.open_time < end,
    )


def _bars_query(
    symbols: Iterable[str], timeframe: str, start: datetime, end: datetime, prices: Sequence[str]
) -> Select[Any]:
    """symbol, open_time and ``prices`` of the bars of ``timeframe`` opening in
    ``[start, end)`` for ``symbols``, by symbol then time."""
    c = candles.c
    return (
        select(c.symbol, c.open_time, *(c[k] for k in prices))
        .where(_bars_in(symbols, timeframe, start, end))
        .order_by(c.symbol, c.open_time)
    )


def load_candles(
    connection: Connection,
    symbols: Iterable[str],
    timeframe: str,
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """Bars of ``timeframe`` with open time in ``[start, end)`` for ``symbols``."""
    query = _bars_query(symbols, timeframe, start, end, OHLCV)
    frame = read_frame(connection, query)  # column-wise: a year of 100 symbols in ~2 s
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    if len(frame):
        frame["symbol"] = frame["symbol"].astype(str)
    return frame


def finer_timeframe(stored: Iterable[str], timeframe: str) -> str | None:
    """The finest of the ``stored`` timeframes that divides ``timeframe`` into whole bars
    (used to order two touches inside one bar), or None."""
    bar = seconds(timeframe)
    finer = [
        tf for tf in stored if is_timeframe(tf) and seconds(tf) < bar and bar % seconds(tf) == 0
    ]
    return min(finer, key=seconds) if finer else None


def load_bar_series_of(
    connection: Connection, symbols: Iterable[str], timeframe: str, start: datetime, end: datetime
) -> dict[str, tuple[BarSeries, BarSeries | None]]:
    """Each symbol's bars of ``timeframe`` opening in ``[start, end)``, and those of its
    :func:`finer_timeframe` over the same span when stored: one column-wise read of the
    bars and one of the finer bars, so a year of 100 instruments costs two queries, not
    two hundred."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    c = candles.c
    stored = connection.execute(
        select(c.symbol, c.timeframe)
        .where(c.symbol.in_(wanted), c.open_time >= start, c.open_time < end)
        .group_by(c.symbol, c.timeframe)
    ).all()
    stored_by_symbol: dict[str, list[str]] = {}
    for symbol, tf in stored:
        stored_by_symbol.setdefault(symbol, []).append(str(tf))
    finer = {
        symbol: fine_tf
        for symbol, tfs in stored_by_symbol.items()
        if (fine_tf := finer_timeframe(tfs, timeframe)) is not None
    }
    bars = _bars_by_symbol(connection, wanted, timeframe, start, end)
    fine: dict[str, BarSeries] = {}
    for fine_tf in sorted(set(finer.values())):
        users = [s for s, tf in finer.items() if tf == fine_tf]
        fine.update(_bars_by_symbol(connection, users, fine_tf, start, end))
    return {s: (bars[s], fine.get(s)) for s in wanted}


def _bars_by_symbol(
    connection: Connection, symbols: list[str], timeframe: str, start: datetime, end: datetime
) -> dict[str, BarSeries]:
    if is_postgres(connection):
        return _bar_arrays_by_symbol(connection, symbols, timeframe, start, end)
    query = _bars_query(symbols, timeframe, start, end, BAR_PRICES)
    frame = read_frame(connection, query)
    length = duration(timeframe)
    by_symbol = frame.groupby("symbol", sort=False).indices if len(frame) else {}
    empty = frame.iloc[:0]
    return {
        s: bar_series(frame.iloc[by_symbol[s]] if s in by_symbol else empty, length)
        for s in symbols
    }


def _bar_arrays_by_symbol(
    connection: Connection, symbols: list[str], timeframe: str, start: datetime, end: datetime
) -> dict[str, BarSeries]:
    """Postgres: one row per symbol, each column one array (``db.columns.read_arrays``):
    a year of 100 instruments in 0.8-1.0 s instead of 1.2-1.5 s through a row-per-bar CSV
    ``COPY`` (no float and time text for the server to write and pandas to parse). The
    arrays are aggregated unordered (an ``ORDER BY`` inside each aggregate doubles the
    server's work) and put in time order here when they are not."""
    c = candles.c
    columns = ("open_time", *BAR_PRICES)
    query = (
        select(c.symbol, *(func.array_send(func.array_agg(c[k])) for k in columns))
        .where(_bars_in(symbols, timeframe, start, end))
        .group_by(c.symbol)
    )
    bar_ns = int(pd.Timedelta(duration(timeframe)).value)
    none = np.zeros(0, np.float64)
    found = {s: BarSeries(np.zeros(0, np.int64), none, none, none, none, bar_ns) for s in symbols}
    for symbol, open_ns, bar_open, high, low, close in read_arrays(connection, query):
        if np.any(np.diff(open_ns) < 0):
            order = np.argsort(open_ns, kind="stable")
            open_ns, bar_open, high, low, close = (
                a[order] for a in (open_ns, bar_open, high, low, close)
            )
        found[symbol] = BarSeries(open_ns, bar_open, high, low, close, bar_ns)
    return found
