"""The read endpoints the desk's screen needs beyond the pinned API (SPEC §18).

- ``GET /health/history``: the persisted health reports over time (``signal_health_metrics``,
  one row per sync), oldest first — score, coverage and confidence as lines.
- ``GET /health/gaps``: the open gaps by type, kind and fillability, and the signals that
  need manual attention (an open gap no tier can fill), newest first — over the signals in
  the health report's window, so the counts add up to ``GET /health``.
- ``GET /candles``: bars of one instrument and timeframe from the ``candles`` table.
- ``GET /analytics/trades``: closed trades in R, for the MFE/MAE scatter and the equity
  curve — from ``signal_outcomes`` once the outcomes assets have run, else the trades the
  indicator reported (registry rows with an EXIT), so the view is never blank.

All of them need the bearer token when one is configured (same as the read API).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import Connection, Row, Select, column, func, select, table
from sqlalchemy.exc import DBAPIError

from alphapulse_dagster.api.auth import require_token
from alphapulse_dagster.api.query_checks import app_engine, plain_text, utc_time
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.tables import candles, signal_gaps, signal_health_metrics, signals
from alphapulse_dagster.sync.health import signal_moment

router = APIRouter(dependencies=[Depends(require_token)])

MAX_CANDLES = 5000
MAX_ATTENTION = 200


class HealthPoint(BaseModel):
    measured_at: datetime
    health_score: float
    signal_coverage: float | None = None
    data_confidence: float | None = None
    total_gaps: int
    signals: int
    manual_intervention: int


class HealthHistory(BaseModel):
    points: list[HealthPoint]


class GapCount(BaseModel):
    gap_type: str
    kind: str
    fillable: bool
    gaps: int


class AttentionItem(BaseModel):
    signal_id: str
    symbol: str
    status: str
    gap_types: list[str]
    detected_at: datetime


class GapOverview(BaseModel):
    breakdown: list[GapCount]
    attention: list[AttentionItem]


class Candle(BaseModel):
    """``time`` is the bar OPEN time in epoch seconds (UTC)."""

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class CandleSeries(BaseModel):
    symbol: str
    timeframe: str
    candles: list[Candle]


class Trade(BaseModel):
    """One closed trade: realised ``r`` and excursions ``mfe_r``/``mae_r`` in R."""

    signal_id: str
    closed_at: datetime | None = None
    r: float
    mfe_r: float | None = None
    mae_r: float | None = None


class TradeList(BaseModel):
    source: str
    trades: list[Trade]


# --- queries ------------------------------------------------------------------------------


def health_history(connection: Connection, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` persisted reports, oldest first."""
    m = signal_health_metrics.c
    rows = connection.execute(
        select(signal_health_metrics)
        .order_by(m.measured_at.desc(), m.metric_id.desc())
        .limit(limit)
    ).mappings()
    points = [{**row, "signals": row["total_signals"]} for row in rows]
    return points[::-1]


def gap_overview(connection: Connection, since: datetime) -> dict[str, Any]:
    """Open gaps by (type, kind, fillable), and the signals with an open gap no tier can
    fill (SPEC §9 ``manual_intervention``), most recently detected first; of the signals
    whose moment (signal, else created / confirmed time) is at or after ``since``."""
    g = signal_gaps.c
    in_window = g.signal_id.in_(select(signals.c.signal_id).where(signal_moment() >= since))
    open_gap = g.resolved_at.is_(None) & in_window
    breakdown = [
        {"gap_type": gap_type, "kind": kind, "fillable": bool(fillable), "gaps": int(n)}
        for gap_type, kind, fillable, n in connection.execute(
            select(g.gap_type, g.kind, g.fillable, func.count())
            .where(open_gap)
            .group_by(g.gap_type, g.kind, g.fillable)
            .order_by(func.count().desc(), g.gap_type)
        )
    ]
    manual = (
        select(g.signal_id, func.max(g.detected_at).label("detected_at"))
        .where(open_gap, g.fillable.is_(False))
        .group_by(g.signal_id)
        .order_by(func.max(g.detected_at).desc(), g.signal_id)
        .limit(MAX_ATTENTION)
        .subquery()
    )
    rows = connection.execute(
        select(manual.c.signal_id, manual.c.detected_at, signals.c.symbol, signals.c.status)
        .join(signals, signals.c.signal_id == manual.c.signal_id)
        .order_by(manual.c.detected_at.desc(), manual.c.signal_id)
    ).all()
    types: dict[str, list[str]] = {row.signal_id: [] for row in rows}
    if types:
        for signal_id, gap_type in connection.execute(
            select(g.signal_id, g.gap_type)
            .where(open_gap, g.fillable.is_(False), g.signal_id.in_(list(types)))
            .order_by(g.signal_id, g.gap_type)
        ):
            types[signal_id].append(gap_type)
    attention = [
        {
            "signal_id": row.signal_id,
            "symbol": row.symbol,
            "status": row.status,
            "gap_types": types[row.signal_id],
            "detected_at": row.detected_at,
        }
        for row in rows
    ]
    return {"breakdown": breakdown, "attention": attention}


def candle_series(
    connection: Connection,
    symbol: str,
    timeframe: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Bars with open time in ``[since, until)``, oldest first; at most ``limit``, the
    latest ones when more match."""
    c = candles.c
    query = select(c.open_time, c.open, c.high, c.low, c.close, c.volume).where(
        c.symbol == symbol, c.timeframe == timeframe
    )
    if since is not None:
        query = query.where(c.open_time >= since)
    if until is not None:
        query = query.where(c.open_time < until)
    rows = connection.execute(query.order_by(c.open_time.desc()).limit(limit)).all()
    return [
        {
            "time": int(row.open_time.timestamp()),
            "open": row.open,
            "high": row.high,
            "low": row.low,
            "close": row.close,
            "volume": row.volume,
        }
        for row in reversed(rows)
    ]


# signal_outcomes as pinned in SPEC §16; its owner (the outcomes assets) creates it
_outcomes = table(
    "signal_outcomes",
    column("signal_id"),
    column("entry_mode"),
    column("status"),
    column("exit_at"),
    column("r_multiple"),
    column("mfe_r"),
    column("mae_r"),
)


def _realised_r(direction: str | None, entry: float, stop: float, exit_price: float) -> float:
    """Signed (exit − entry) / |entry − stop|, in R (SPEC §17)."""
    sign = -1.0 if direction == "SHORT" else 1.0
    return sign * (exit_price - entry) / abs(entry - stop)


def _oldest_first(
    connection: Connection, latest: Select[Any], r: Callable[[Row[Any]], float]
) -> list[dict[str, Any]]:
    """The trades of ``latest`` (newest first, limited; its columns labelled ``signal_id``,
    ``closed_at``, ``mfe_r``, ``mae_r``) as :class:`Trade` items, oldest first, each with
    its realised ``r(row)``."""
    rows = connection.execute(latest).all()
    return [
        {
            "signal_id": row.signal_id,
            "closed_at": row.closed_at,
            "r": r(row),
            "mfe_r": row.mfe_r,
            "mae_r": row.mae_r,
        }
        for row in reversed(rows)
    ]


def closed_trades(connection: Connection, limit: int) -> tuple[str, list[dict[str, Any]]]:
    """The latest ``limit`` closed trades, oldest first: the actual entries of
    ``signal_outcomes`` when that table holds any, else the registry's reported exits (R
    from entry, stop and exit price)."""
    o = _outcomes.c
    outcomes = (
        select(o.signal_id, o.exit_at.label("closed_at"), o.r_multiple, o.mfe_r, o.mae_r)
        .where(o.entry_mode == "actual", o.status == "CLOSED", o.r_multiple.is_not(None))
        .order_by(o.exit_at.desc(), o.signal_id)
        .limit(limit)
    )
    try:
        with connection.begin_nested():
            trades = _oldest_first(connection, outcomes, lambda row: float(row.r_multiple))
    except DBAPIError:  # the outcomes assets have not created their table yet
        trades = []
    if trades:
        return "signal_outcomes", trades
    s = signals.c
    reported = (
        select(s.signal_id, s.direction, s.closed_at, s.entry_price, s.stop_loss, s.exit_price)
        .add_columns(s.mfe.label("mfe_r"), s.mae.label("mae_r"))
        .where(
            s.status == "CLOSED",
            s.entry_price.is_not(None),
            s.stop_loss.is_not(None),
            s.exit_price.is_not(None),
            s.entry_price != s.stop_loss,
        )
        .order_by(s.closed_at.desc(), s.signal_id)
        .limit(limit)
    )
    return "reported_exits", _oldest_first(connection, reported, _reported_r)


def _reported_r(row: Row[Any]) -> float:
    return round(_realised_r(row.direction, row.entry_price, row.stop_loss, row.exit_price), 4)


# --- routes -------------------------------------------------------------------------------


@router.get(
    "/health/history",
    response_model=HealthHistory,
    tags=["health"],
    summary="Health reports over time (one per sync), oldest first",
)
def get_health_history(
    request: Request, limit: Annotated[int, Query(ge=1, le=2000)] = 500
) -> dict[str, Any]:
    with app_engine(request).connect() as connection:
        return {"points": health_history(connection, limit)}


@router.get(
    "/health/gaps",
    response_model=GapOverview,
    tags=["health"],
    summary="Open gaps by type and kind; signals needing manual attention",
)
def get_gap_overview(request: Request) -> dict[str, Any]:
    since = utcnow() - timedelta(days=_health_window_days())
    with app_engine(request).connect() as connection:
        return gap_overview(connection, since)


@lru_cache(maxsize=1)
def _health_window_days() -> int:
    """The report window of ``hybrid_sync.health_window_days`` (config read once)."""
    return load_config().hybrid_sync.health_window_days


@router.get(
    "/candles",
    response_model=CandleSeries,
    tags=["market"],
    summary="Candles of one instrument and timeframe (bar open time, epoch seconds)",
)
def get_candles(
    request: Request,
    symbol: Annotated[str, Query(max_length=40)],
    timeframe: Annotated[str, Query(max_length=8)],
    since: Annotated[datetime | None, Query(description="inclusive bar open time")] = None,
    until: Annotated[datetime | None, Query(description="exclusive bar open time")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 1000,
) -> dict[str, Any]:
    symbol, timeframe = str(plain_text(symbol, "symbol")), str(plain_text(timeframe, "timeframe"))
    with app_engine(request).connect() as connection:
        bars = candle_series(
            connection, symbol, timeframe, utc_time(since, "since"), utc_time(until, "until"), limit
        )
    return {"symbol": symbol, "timeframe": timeframe, "candles": bars}


@router.get(
    "/analytics/trades",
    response_model=TradeList,
    tags=["analytics"],
    summary="Closed trades in R (realised, MFE, MAE), oldest first",
)
def get_trades(
    request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 2000
) -> dict[str, Any]:
    with app_engine(request).connect() as connection:
        source, trades = closed_trades(connection, limit)
    return {"source": source, "trades": trades}
