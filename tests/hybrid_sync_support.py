"""Builders for hybrid-sync tests: events as the webhook / MTF pipeline would append them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.tables import candles, signal_gaps, signals
from alphapulse_dagster.sync.events import NewEvent, append_events, payload_idempotency_key

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
CONFIG = AppConfig()
HTF = {"4h": "BULLISH", "1d": "NEUTRAL"}


def event(
    event_type: str,
    trade_id: str,
    at: datetime,
    symbol: str = "BTCUSDT",
    source: str = "tradingview",
    signal_id: str | None = None,
    **payload: Any,
) -> NewEvent:
    body = {"event": event_type, "trade_id": trade_id, "symbol": symbol, "time": at.isoformat()}
    body.update(payload)
    return NewEvent(
        source=source,
        event_type=event_type,
        signal_id=signal_id or f"{symbol}:{trade_id}",
        symbol=symbol,
        trade_id=trade_id,
        event_time=at,
        payload=body,
        idempotency_key=payload_idempotency_key(body),
    )


def created(trade_id: str, at: datetime, **extra: Any) -> NewEvent:
    payload: dict[str, Any] = {
        "timeframe": "60",
        "direction": "BULLISH",
        "htf_alignment": HTF,
        "session": "LONDON",
        "market_state": "TRENDING",
    }
    payload.update(extra)
    return event("SIGNAL_CREATED", trade_id, at, **payload)


def entry(trade_id: str, at: datetime, **extra: Any) -> NewEvent:
    payload: dict[str, Any] = {
        "timeframe": "1h",
        "direction": "LONG",
        "entry_price": 100.0,
        "stop_loss": 95.0,
    }
    payload.update(extra)
    return event("ENTRY", trade_id, at, **payload)


def append(engine: sa.Engine, *events: NewEvent, received_at: datetime = T0) -> None:
    with engine.begin() as conn:
        append_events(conn, list(events), received_at)


def registry(engine: sa.Engine, signal_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(signals).where(signals.c.signal_id == signal_id)).mappings()
        return dict(row.one())


def open_gaps(engine: sa.Engine, signal_id: str | None = None) -> set[tuple[str, str]]:
    query = sa.select(signal_gaps.c.signal_id, signal_gaps.c.gap_type).where(
        signal_gaps.c.resolved_at.is_(None)
    )
    if signal_id is not None:
        query = query.where(signal_gaps.c.signal_id == signal_id)
    with engine.connect() as conn:
        return {(r[0], r[1]) for r in conn.execute(query)}


def load_candles(
    engine: sa.Engine,
    symbol: str,
    timeframe: str,
    start: datetime,
    bars: list[tuple[float, float, float, float]],
    step: timedelta = timedelta(hours=1),
) -> None:
    """``bars`` = (open, high, low, close) from ``start`` (bar open times)."""
    rows = [
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "open_time": start + i * step,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": 1.0,
        }
        for i, (o, h, lo, c) in enumerate(bars)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(candles), rows)


def materialized(result: Any, asset: str) -> list[Any]:
    """The materializations of ``asset`` in a Dagster run's result (the sync's four assets
    are one step, so they cannot be looked up by node)."""
    return [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key.to_user_string() == asset
    ]
