"""Helpers shared by the webhook/API tests: payload builders and row counts."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from alphapulse_dagster.db.tables import signal_events, webhook_rejects

SECRET = "s3cret-Ü-value"


def created(trade_id: str = "20190614_120000_BULLISH", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "secret": SECRET,
        "event": "SIGNAL_CREATED",
        "trade_id": trade_id,
        "symbol": "BTCUSD",
        "time": "2019-06-14T12:00:00Z",
        "timeframe": "60",
        "direction": "BULLISH",
        "htf_alignment": {"240": "BULLISH", "1D": "NEUTRAL"},
        "session": "NEW_YORK",
        "market_state": "TRENDING",
    }
    payload.update(extra)
    return payload


def entry(trade_id: str = "20190614_120000_BULLISH", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "secret": SECRET,
        "event": "entry",
        "trade_id": trade_id,
        "symbol": "BTCUSD",
        "time": 1560517200000,
        "timeframe": "1h",
        "direction": "LONG",
        "entry_price": 8360.0,
        "stop_loss": 8270.0,
        "targets": [8450.0, 8540.0, 8630.0],
    }
    payload.update(extra)
    return payload


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def events(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(signal_events).order_by(signal_events.c.event_id))
        return [dict(row) for row in rows.mappings()]


def rejects(engine: sa.Engine, client: Any = None) -> list[dict[str, Any]]:
    """The ``webhook_rejects`` rows; with a running ``TestClient``, its queued reject rows
    are written first (the server writes them in batches)."""
    if client is not None:
        client.portal.call(client.app.state.rejects.flush)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(webhook_rejects).order_by(webhook_rejects.c.reject_id))
        return [dict(row) for row in rows.mappings()]
