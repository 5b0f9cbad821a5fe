"""Advance stored MTF signals through their lifecycle as entry-timeframe bars close.

Each change of ``ai_signals_mtf.status`` appends the matching event to ``signal_events``
(ENTRY on the fill, EXIT on the exit, CANCELLED/EXPIRED when the limit was never filled),
so the registry sees an AlphaPulse signal exactly like a TradingView one. Signals that leave
the active states lose their Redis active marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select, update

from alphapulse_dagster.db.tables import ACTIVE_STATUSES, ai_signals_mtf
from alphapulse_dagster.market.candle_store import load_candles
from alphapulse_dagster.market.timeframes import duration
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.trade_outcome import Outcome, trade_outcome
from alphapulse_dagster.sync.events import NewEvent, append_events


@dataclass
class LifecycleStats:
    confirmed: int = 0
    closed: int = 0
    expired: int = 0
    still_pending: int = 0


def _event(row: Any, event_type: str, at: datetime, payload: dict[str, Any]) -> NewEvent:
    body = {
        "event": event_type,
        "signal_id": row.signal_id,
        "symbol": row.symbol,
        "direction": row.direction,
        "timeframe": row.signal_timeframe,
        "time": at.isoformat(),
        **payload,
    }
    return NewEvent(
        source="alphapulse",
        event_type=event_type,
        signal_id=row.signal_id,
        symbol=row.symbol,
        event_time=at,
        payload=body,
        idempotency_key=f"alphapulse:{row.signal_id}:{event_type}",
    )


def _events_for(row: Any, outcome: Outcome) -> list[NewEvent]:
    events = []
    if outcome.filled_at and row.filled_at is None:
        events.append(
            _event(
                row,
                "ENTRY",
                outcome.filled_at,
                {
                    "entry_price": row.entry_price,
                    "stop_loss": row.stop_loss,
                    "targets": row.take_profits,
                },
            )
        )
    if outcome.status == "CLOSED" and outcome.closed_at:
        events.append(
            _event(
                row,
                "EXIT",
                outcome.closed_at,
                {"exit_price": outcome.exit_price, "exit_reason": outcome.reason},
            )
        )
    if outcome.status == "CANCELLED":
        events.append(_event(row, "CANCELLED", row.expires_at, {"reason": "EXPIRED"}))
    return events


def _resolved_at(row: Any, outcome: Outcome) -> datetime | None:
    if outcome.status == "CLOSED":
        return outcome.closed_at
    if outcome.status == "CANCELLED":
        return row.expires_at  # type: ignore[no-any-return]
    return None


def advance_signals(
    engine: Engine,
    cache: SignalCache,
    as_of: datetime,
    entry_valid_bars: int,
    now: datetime,
) -> LifecycleStats:
    """Re-evaluate every active MTF signal placed before ``as_of`` against the entry bars
    closed by ``as_of``; write status changes and their events, one transaction each."""
    stats = LifecycleStats()
    with engine.connect() as connection:
        active = connection.execute(
            select(ai_signals_mtf).where(
                ai_signals_mtf.c.status.in_(ACTIVE_STATUSES), ai_signals_mtf.c.timestamp <= as_of
            )
        ).all()
        bars_by_key: dict[tuple[str, str], pd.DataFrame] = {}
        for symbol, timeframe in {(r.symbol, r.entry_timeframe) for r in active}:
            start = min(r.timestamp for r in active if r.symbol == symbol)
            bars_by_key[(symbol, timeframe)] = load_candles(
                connection, [symbol], timeframe, start, as_of
            )
    for row in active:
        bars = bars_by_key[(row.symbol, row.entry_timeframe)]
        outcome = trade_outcome(
            row.direction,
            row.entry_price,
            row.stop_loss,
            list(row.take_profits),
            row.timestamp,
            bars,
            pd.Timedelta(duration(row.entry_timeframe)),
            entry_valid_bars,
            as_of,
        )
        if outcome.status == "PENDING":
            stats.still_pending += 1
            continue
        if outcome.status == row.status:  # CONFIRMED and still open
            continue
        with engine.begin() as connection:
            connection.execute(
                update(ai_signals_mtf)
                .where(ai_signals_mtf.c.signal_id == row.signal_id)
                .values(
                    status=outcome.status,
                    status_reason=outcome.reason,
                    filled_at=outcome.filled_at or row.filled_at,
                    resolved_at=_resolved_at(row, outcome),
                )
            )
            append_events(connection, _events_for(row, outcome), received_at=now)
        if outcome.status == "CONFIRMED":
            stats.confirmed += 1
        elif outcome.status == "CLOSED":
            stats.closed += 1
        else:
            stats.expired += 1
        if outcome.status not in ACTIVE_STATUSES:
            cache.forget_active(row.symbol, row.direction, row.signal_id)
    return stats
