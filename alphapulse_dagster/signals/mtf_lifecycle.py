"""Advance stored MTF signals through their lifecycle as entry-timeframe bars close.

Each change of ``ai_signals_mtf.status`` appends the matching event to ``signal_events``
(ENTRY on the fill, EXIT on the exit, CANCELLED/EXPIRED when the limit was never filled),
so the registry sees an AlphaPulse signal exactly like a TradingView one. Signals that leave
the active states lose their Redis active marker. Fill and exit are decided by the one
trade rule, :mod:`alphapulse_dagster.signals.trade_management`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, select, update

from alphapulse_dagster.db.tables import ACTIVE_STATUSES, ai_signals_mtf
from alphapulse_dagster.market.candle_store import load_bar_series
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.trade_management import (
    CLOSED,
    NO_TIME,
    NOT_FILLED,
    TradeRule,
    manage_trades,
    to_ns,
    trades_of_signals,
)
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


def _events_for(row: Any, change: _Change) -> list[NewEvent]:
    events = []
    if change.filled_at and row.filled_at is None:
        events.append(
            _event(
                row,
                "ENTRY",
                change.filled_at,
                {
                    "entry_price": change.fill_price or row.entry_price,
                    "stop_loss": row.stop_loss,
                    "targets": row.take_profits,
                },
            )
        )
    if change.status == "CLOSED" and change.closed_at:
        events.append(
            _event(
                row,
                "EXIT",
                change.closed_at,
                {"exit_price": change.exit_price, "exit_reason": change.reason},
            )
        )
    if change.status == "CANCELLED":
        events.append(_event(row, "CANCELLED", row.expires_at, {"reason": "EXPIRED"}))
    return events


@dataclass(frozen=True)
class _Change:
    status: str  # PENDING | CONFIRMED | CLOSED | CANCELLED
    reason: str | None = None
    filled_at: datetime | None = None
    closed_at: datetime | None = None
    exit_price: float | None = None
    fill_price: float | None = None  # the entry, or the open of a bar that gapped through it


def _when(ns: int) -> datetime | None:
    return None if ns == NO_TIME else pd.Timestamp(ns, tz="UTC").to_pydatetime()


def _frame(rows: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([dict(r._mapping) for r in rows])


def _lifecycle_states(
    connection: Connection, rows: list[Any], rule: TradeRule, as_of: datetime
) -> list[_Change]:
    """Each active signal's state as of ``as_of``, by the one trade rule (grouped by
    instrument: one vectorised call per symbol and entry timeframe)."""
    changes: list[_Change | None] = [None] * len(rows)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row.symbol, row.entry_timeframe), []).append(i)
    for (symbol, timeframe), members in groups.items():
        picked = [rows[i] for i in members]
        start = min(r.timestamp for r in picked)
        bars, finer = load_bar_series(connection, symbol, timeframe, start, as_of)
        results = manage_trades(
            trades_of_signals(_frame(picked)), bars, rule, int(to_ns(as_of)[0]), finer
        )
        for j, i in enumerate(members):
            status = str(results.status[j])
            filled = _when(int(results.filled_at[j]))
            fill_price = float(results.fill_price[j]) if filled else None
            if status == CLOSED:
                changes[i] = _Change(
                    "CLOSED",
                    results.reason(j),
                    filled,
                    _when(int(results.exit_at[j])),
                    float(results.exit_price[j]),
                    fill_price,
                )
            elif status == NOT_FILLED:
                changes[i] = _Change("CANCELLED", "EXPIRED")
            else:
                changes[i] = _Change(
                    "CONFIRMED" if filled else "PENDING", None, filled, fill_price=fill_price
                )
    return [c for c in changes if c is not None]


def _resolved_at(row: Any, change: _Change) -> datetime | None:
    if change.status == "CLOSED":
        return change.closed_at
    if change.status == "CANCELLED":
        return row.expires_at  # type: ignore[no-any-return]
    return None


def advance_signals(
    engine: Engine,
    cache: SignalCache,
    as_of: datetime,
    rule: TradeRule,
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
        changes = _lifecycle_states(connection, list(active), rule, as_of)
    for row, change in zip(active, changes, strict=True):
        if change.status == "PENDING":
            stats.still_pending += 1
            continue
        if change.status == row.status:  # CONFIRMED and still open
            continue
        with engine.begin() as connection:
            connection.execute(
                update(ai_signals_mtf)
                .where(ai_signals_mtf.c.signal_id == row.signal_id)
                .values(
                    status=change.status,
                    status_reason=change.reason,
                    filled_at=change.filled_at or row.filled_at,
                    resolved_at=_resolved_at(row, change),
                )
            )
            append_events(connection, _events_for(row, change), received_at=now)
        if change.status == "CONFIRMED":
            stats.confirmed += 1
        elif change.status == "CLOSED":
            stats.closed += 1
        else:
            stats.expired += 1
        if change.status not in ACTIVE_STATUSES:
            cache.forget_active(row.symbol, row.direction, row.signal_id)
    return stats
