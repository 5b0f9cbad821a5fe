"""Tier 1 of the reconciliation (confidence 1.0): a trade's extremes measured from candles.

MFE / MAE (price units, both ≥ 0): LONG MFE = max(high since entry) − entry, MAE = entry −
min(low since entry); SHORT MFE = entry − min(low), MAE = max(high) − entry. In R: ÷ |entry −
stop|. Candles are selected by bar *open* time: bars opening in ``[floor(entry time), end)``
that have closed by ``now`` (``end`` = exit time, or ``now`` for an active trade); the bar
containing the fill counts whole (bar resolution). The finest timeframe at or below the
trade's that covers it without a missing bar is used.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, exists, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from alphapulse_dagster.db.bulk import is_postgres
from alphapulse_dagster.db.tables import candles
from alphapulse_dagster.market.timeframes import TIMEFRAME_SECONDS


@dataclass(frozen=True)
class Excursion:
    """Trade extremes since entry. ``mfe``/``mae`` in R (None without a usable stop)."""

    highest: float
    lowest: float
    mfe_price: float
    mae_price: float
    mfe: float | None
    mae: float | None
    target_hit: int | None  # highest target index touched, 1-based; 0 = none
    stop_hit: bool | None


def excursion(
    direction: str,
    entry: float,
    stop: float | None,
    targets: Sequence[float] | None,
    highs: Sequence[float],
    lows: Sequence[float],
) -> Excursion:
    """MFE / MAE of a trade from the highs and lows of the bars since entry (SPEC §9)."""
    highest, lowest = max(highs), min(lows)
    if direction == "LONG":
        mfe_price, mae_price = max(highest - entry, 0.0), max(entry - lowest, 0.0)
    else:
        mfe_price, mae_price = max(entry - lowest, 0.0), max(highest - entry, 0.0)
    risk = abs(entry - stop) if stop is not None else 0.0
    mfe = mfe_price / risk if risk > 0 else None
    mae = mae_price / risk if risk > 0 else None
    target_hit: int | None = None
    if targets:
        target_hit = 0
        for index, target in enumerate(targets, start=1):
            touched = highest >= target if direction == "LONG" else lowest <= target
            if touched:
                target_hit = max(target_hit, index)
    stop_hit: bool | None = None
    if stop is not None:
        stop_hit = lowest <= stop if direction == "LONG" else highest >= stop
    return Excursion(highest, lowest, mfe_price, mae_price, mfe, mae, target_hit, stop_hit)


def _floor(moment: datetime, step: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step, tz=UTC)


@dataclass
class SymbolCandles:
    """The highs and lows of one symbol's bars, per timeframe, for :func:`candle_excursion`."""

    # timeframe -> (open_time epochs, highs, lows), ascending
    by_timeframe: dict[str, tuple[list[int], list[float], list[float]]]


def candle_excursion(
    row: Mapping[str, Any], data: SymbolCandles | None, now: datetime
) -> tuple[Excursion, str] | None:
    """Tier 1 for one trade: the finest timeframe (at or below the trade's) whose bars
    cover the trade without a hole. None when nothing covers it."""
    if data is None:
        return None
    start, end = row["confirmed_at"], row["closed_at"] or now
    trade_tf = row["timeframe"]
    limit = TIMEFRAME_SECONDS.get(trade_tf or "", max(TIMEFRAME_SECONDS.values()))
    for timeframe in sorted(data.by_timeframe, key=TIMEFRAME_SECONDS.__getitem__):
        step = TIMEFRAME_SECONDS[timeframe]
        if step > limit:
            break
        first = int(_floor(start, step).timestamp())
        last_open = min(int(end.timestamp()) - 1, int(now.timestamp()) - step)
        last_open -= last_open % step
        if last_open < first:
            continue
        opens, highs, lows = data.by_timeframe[timeframe]
        lo = bisect.bisect_left(opens, first)
        hi = bisect.bisect_right(opens, last_open)
        expected = (last_open - first) // step + 1
        if hi - lo != expected:
            continue  # a missing bar: this timeframe does not cover the trade
        result = excursion(
            row["direction"],
            row["entry_price"],
            row["stop_loss"],
            row["targets"],
            highs[lo:hi],
            lows[lo:hi],
        )
        return result, timeframe
    return None


def load_candles(
    conn: Connection,
    trades: Sequence[Mapping[str, Any]],
    now: datetime,
    known: dict[str, bool] | None = None,
) -> dict[str, SymbolCandles]:
    """One query per symbol with trades to measure, over the union of their windows.
    ``known`` caches, for the whole pass, which symbols have any candles at all."""
    known = {} if known is None else known
    by_symbol: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in trades:
        by_symbol[row["symbol"]].append(row)
    unknown = [symbol for symbol in by_symbol if symbol not in known]
    if unknown and is_postgres(conn):  # one round trip: which of them have any candles
        wanted = (
            func.unnest(literal(unknown, ARRAY(candles.c.symbol.type)))
            .table_valued("symbol")
            .render_derived(name="wanted")
        )
        having = exists(select(candles.c.symbol).where(candles.c.symbol == wanted.c.symbol))
        found = {r[0] for r in conn.execute(select(wanted.c.symbol).where(having))}
        known.update({symbol: symbol in found for symbol in unknown})
    for symbol in unknown:
        if symbol not in known:
            probe = select(candles.c.symbol).where(candles.c.symbol == symbol).limit(1)
            known[symbol] = conn.execute(probe).first() is not None
    by_symbol = {s: rows for s, rows in by_symbol.items() if known[s]}
    loaded: dict[str, SymbolCandles] = {}
    for symbol, rows in by_symbol.items():
        start = min(r["confirmed_at"] for r in rows) - timedelta(days=7)
        end = max((r["closed_at"] or now) for r in rows)
        result = conn.execute(
            select(candles.c.timeframe, candles.c.open_time, candles.c.high, candles.c.low)
            .where(
                candles.c.symbol == symbol,
                candles.c.open_time >= start,
                candles.c.open_time <= end,
            )
            .order_by(candles.c.timeframe, candles.c.open_time)
        )
        series: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for r in result:
            if r.timeframe not in TIMEFRAME_SECONDS:
                continue
            opens, highs, lows = series.setdefault(r.timeframe, ([], [], []))
            opens.append(int(r.open_time.timestamp()))
            highs.append(float(r.high))
            lows.append(float(r.low))
        if series:
            loaded[symbol] = SymbolCandles(series)
    return loaded
