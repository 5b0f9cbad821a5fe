"""Cancellation detector: a PENDING signal past its window has expired.

The window is ``cancellation_window_bars`` bars of the signal's timeframe (a per-timeframe
override in ``cancellation_window_overrides`` wins; a signal without a timeframe uses
``mtf_strategies.default_signal_timeframe``), counted from ``created_at`` (the
SIGNAL_CREATED event time).

The inference is itself an event: a CANCELLED with source ``alphapulse``, payload
``{"reason": "EXPIRED", "inferred": true}``, ``event_time`` = the expiry moment and the
idempotency key ``inferred-expiry:<signal_id>`` — so the registry stays a pure fold of the
log, a rerun appends nothing, and an ENTRY timed after the expiry re-opens the signal
(``lifecycle.fold``). The fold gives it ``status_confidence`` 0.8; an explicit CANCELLED
(1.0) outranks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.bulk import in_ids
from alphapulse_dagster.db.tables import signals
from alphapulse_dagster.market.timeframes import duration, is_timeframe
from alphapulse_dagster.sync.events import EventType, NewEvent, append_events
from alphapulse_dagster.sync.lifecycle import PENDING
from alphapulse_dagster.sync.projection import chunked


def window_bars(config: AppConfig, timeframe: str) -> int:
    sync = config.hybrid_sync
    return sync.cancellation_window_overrides.get(timeframe, sync.cancellation_window_bars)


def expiry_events(
    conn: Connection, config: AppConfig, now: datetime, signal_ids: Sequence[str] | None = None
) -> list[NewEvent]:
    """Inferred CANCELLED/EXPIRED events for PENDING signals (of ``signal_ids``, or all)
    whose window has passed at ``now``."""
    columns = (
        signals.c.signal_id,
        signals.c.symbol,
        signals.c.trade_id,
        signals.c.timeframe,
        signals.c.created_at,
    )
    base = select(*columns).where(signals.c.status == PENDING, signals.c.created_at.is_not(None))
    if signal_ids is None:
        rows = list(conn.execute(base))
    else:
        rows = []
        for chunk in chunked(sorted(set(signal_ids))):
            rows.extend(conn.execute(base.where(in_ids(conn, signals.c.signal_id, chunk))))
    events = []
    for row in rows:
        timeframe = row.timeframe if row.timeframe and is_timeframe(row.timeframe) else None
        timeframe = timeframe or config.mtf.default_signal_timeframe
        bars = window_bars(config, timeframe)
        expires_at = row.created_at + bars * duration(timeframe)
        if expires_at > now:
            continue
        events.append(
            NewEvent(
                source="alphapulse",
                event_type=EventType.CANCELLED,
                signal_id=row.signal_id,
                symbol=row.symbol,
                trade_id=row.trade_id,
                event_time=expires_at,
                payload={
                    "reason": "EXPIRED",
                    "inferred": True,
                    "window_bars": bars,
                    "timeframe": timeframe,
                },
                idempotency_key=f"inferred-expiry:{row.signal_id}"[:128],
            )
        )
    return events


def append_expiries(
    conn: Connection, config: AppConfig, now: datetime, signal_ids: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Append the inferred expiries (caller's transaction): the ids of the signals that
    expired now, and of every signal with an expiry event to fold (an expiry appended
    before but not folded yet comes again as a duplicate)."""
    events = expiry_events(conn, config, now, signal_ids)
    if not events:
        return [], []
    appended = append_events(conn, events, received_at=now)
    expired = [e.signal_id for e, a in zip(events, appended, strict=True) if not a.duplicate]
    return expired, [e.signal_id for e in events]
