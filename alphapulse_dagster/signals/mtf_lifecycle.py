"""Advance stored MTF signals through their lifecycle as entry-timeframe bars close.

One evaluation of the trade rule per instrument gives each signal's :class:`Outlook`: when
its fill and its outcome became known. From it, :func:`timeline` replays what advancing
the lifecycle at each of a window's signal times writes, in memory: a backfill writes the
history the hourly runs write, without a database round trip per signal time.

Each change of ``ai_signals_mtf.status`` appends the matching event to ``signal_events``
(ENTRY on the fill, EXIT on the exit, CANCELLED/EXPIRED when the limit was never filled),
so the registry sees an AlphaPulse signal exactly like a TradingView one. Signals that leave
the active states lose their Redis active marker. Fill and exit are decided by the one
trade rule, :mod:`alphapulse_dagster.signals.trade_management`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, select, update

from alphapulse_dagster.db.tables import ACTIVE_STATUSES, ai_signals_mtf
from alphapulse_dagster.market.candle_store import load_bar_series_of
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.trade_management import (
    CLOSED,
    NO_TIME,
    NOT_FILLED,
    TradeResults,
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


NO_END = np.iinfo(np.int64).max  # "never" in the ns arrays


@dataclass(frozen=True)
class Outlook:
    """A signal's lifecycle up to an as-of time, from one evaluation of the trade rule:
    PENDING, CONFIRMED from ``fill_known_at``, ``final`` (its state as of that time) from
    ``decided_at`` (epoch ns; ``NO_TIME``: not by then)."""

    fill_known_at: int
    decided_at: int
    final: _Change

    def state_at(self, at_ns: int) -> _Change:
        """The state an advance to ``at_ns`` (at or after the signal, by the as-of) finds."""
        if self.decided_at != NO_TIME and at_ns >= self.decided_at:
            return self.final
        if self.fill_known_at != NO_TIME and at_ns >= self.fill_known_at:
            return _Change(
                "CONFIRMED", None, self.final.filled_at, fill_price=self.final.fill_price
            )
        return _Change("PENDING")

    @property
    def active_until(self) -> int:
        """Active (PENDING/CONFIRMED) before this time (ns; NO_END if not decided)."""
        return NO_END if self.decided_at == NO_TIME else self.decided_at


def _final(results: TradeResults, j: int) -> _Change:
    status = str(results.status[j])
    filled = _when(int(results.filled_at[j]))
    fill_price = float(results.fill_price[j]) if filled else None
    if status == CLOSED:
        exit_at, price = _when(int(results.exit_at[j])), float(results.exit_price[j])
        return _Change("CLOSED", results.reason(j), filled, exit_at, price, fill_price)
    if status == NOT_FILLED:
        return _Change("CANCELLED", "EXPIRED")
    return _Change("CONFIRMED" if filled else "PENDING", None, filled, fill_price=fill_price)


def outlooks(
    connection: Connection, signals: pd.DataFrame, rule: TradeRule, as_of: datetime
) -> list[Outlook]:
    """Each signal's outlook as of ``as_of`` (columns of ``ai_signals_mtf``), by the one
    trade rule: one read of the bars per entry timeframe, one vectorised call per symbol."""
    found: list[Outlook | None] = [None] * len(signals)
    if not len(signals):
        return []
    signals = signals.reset_index(drop=True)
    horizon = int(to_ns(as_of)[0])
    for timeframe, of_timeframe in signals.groupby("entry_timeframe", sort=False):
        symbols = of_timeframe["symbol"]
        series = load_bar_series_of(
            connection, symbols, str(timeframe), of_timeframe["timestamp"].min(), as_of
        )
        for symbol, members in of_timeframe.groupby("symbol", sort=False).indices.items():
            bars, finer = series[symbol]
            picked = of_timeframe.iloc[members]
            results = manage_trades(trades_of_signals(picked), bars, rule, horizon, finer)
            for j, i in enumerate(picked.index):
                known, decided = int(results.fill_known_at[j]), int(results.decided_at[j])
                found[i] = Outlook(known, decided, _final(results, j))
    return [o for o in found if o is not None]


def _resolved_at(row: Any, change: _Change) -> datetime | None:
    if change.status == "CLOSED":
        return change.closed_at
    if change.status == "CANCELLED":
        return row.expires_at  # type: ignore[no-any-return]
    return None


@dataclass
class Timeline:
    """What advancing the lifecycle at each of a window's times does to one signal:
    ``write`` (its last status change, None if none), ``events`` and ``counted``
    (``confirmed`` / ``closed`` / ``expired``) by advance index, and the advances
    ``[pending_from, pending_to)`` at which it was still pending."""

    row: Any
    write: dict[str, Any] | None = None
    events: list[tuple[int, NewEvent]] = field(default_factory=list)
    counted: list[tuple[int, str]] = field(default_factory=list)
    pending_from: int = 0
    pending_to: int = 0

    @property
    def left_active(self) -> bool:
        return self.write is not None and self.write["status"] not in ACTIVE_STATUSES


_COUNTED = {"CONFIRMED": "confirmed", "CLOSED": "closed", "CANCELLED": "expired"}


def timeline(row: Any, outlook: Outlook, advances: Sequence[int], first: int) -> Timeline:
    """Replay advances to the times ``advances[first:]`` (epoch ns, ascending) on a stored
    signal ``row`` (its status and fill when the window began), as :func:`advance_signals`
    called at each would: a change is written when the state differs from the stored one."""
    n = len(advances)

    def index_of(at: int) -> int:
        return n if at == NO_TIME else max(first, bisect_left(advances, at))

    filled, decided = index_of(outlook.fill_known_at), index_of(outlook.decided_at)
    line = Timeline(row, pending_from=first, pending_to=max(first, min(filled, decided)))
    current = row
    steps = [(filled, outlook.state_at(advances[filled]))] if filled < min(decided, n) else []
    if decided < n:
        steps.append((decided, outlook.final))
    for at, change in steps:
        if change.status == current.status:  # CONFIRMED and still open
            continue
        line.events.extend((at, e) for e in _events_for(current, change))
        line.counted.append((at, _COUNTED[change.status]))
        line.write = {
            "sid": row.signal_id,
            "status": change.status,
            "status_reason": change.reason,
            "filled_at": change.filled_at or current.filled_at,
            "resolved_at": _resolved_at(row, change),
        }
        current = SimpleNamespace(
            **{**vars(current), "status": change.status, "filled_at": line.write["filled_at"]}
        )
    return line


def active_rows(connection: Connection, as_of: datetime | None = None) -> list[SimpleNamespace]:
    """Active MTF signals (placed at or before ``as_of`` when given), oldest first."""
    s = ai_signals_mtf.c
    query = select(ai_signals_mtf).where(s.status.in_(ACTIVE_STATUSES))
    if as_of is not None:
        query = query.where(s.timestamp <= as_of)
    rows = connection.execute(query.order_by(s.timestamp, s.symbol, s.direction)).all()
    return [SimpleNamespace(**r._mapping) for r in rows]


def frame_of(rows: Sequence[Any]) -> pd.DataFrame:
    return pd.DataFrame([vars(r) for r in rows])


def write_changes(connection: Connection, lines: Sequence[Timeline]) -> None:
    """Write each stored signal's last status change (one batched ``UPDATE``)."""
    writes = [line.write for line in lines if line.write is not None]
    if writes:
        c = ai_signals_mtf.c
        connection.execute(
            update(ai_signals_mtf)
            .where(c.signal_id == bindparam("sid"))
            .values(
                status=bindparam("status"),
                status_reason=bindparam("status_reason"),
                filled_at=bindparam("filled_at"),
                resolved_at=bindparam("resolved_at"),
            ),
            writes,
        )


def stats_by_advance(lines: Sequence[Timeline], n: int) -> list[LifecycleStats]:
    """What each of ``n`` advances counted: changes, and the signals still pending there."""
    steps = [LifecycleStats() for _ in range(n)]
    pending = np.zeros(n + 1, np.int64)
    for line in lines:
        for at, name in line.counted:
            setattr(steps[at], name, getattr(steps[at], name) + 1)
        pending[line.pending_from] += 1
        pending[line.pending_to] -= 1
    for step, still in zip(steps, np.cumsum(pending[:n]).tolist(), strict=True):
        step.still_pending = still
    return steps


def advance_signals(
    engine: Engine,
    cache: SignalCache,
    as_of: datetime,
    rule: TradeRule,
    now: datetime,
) -> LifecycleStats:
    """Re-evaluate every active MTF signal placed before ``as_of`` against the entry bars
    closed by ``as_of``; write status changes and their events in one transaction."""
    with engine.begin() as connection:
        rows = active_rows(connection, as_of)
        looks = outlooks(connection, frame_of(rows), rule, as_of)
        at = [int(to_ns(as_of)[0])]
        lines = [timeline(r, o, at, 0) for r, o in zip(rows, looks, strict=True)]
        write_changes(connection, lines)
        append_events(connection, [e for line in lines for _, e in line.events], now)
    cache.forget_many(
        [
            (line.row.symbol, line.row.direction, line.row.signal_id)
            for line in lines
            if line.left_active
        ]
    )
    return stats_by_advance(lines, 1)[0]
