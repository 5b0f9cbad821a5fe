"""Storing MTF signals: ``ai_signals_mtf`` + ``mtf_entry_analysis_history`` + a
SIGNAL_CREATED event, in one transaction per signal; de-duplicated; cached in Redis.

De-duplication: never two *active* signals for one symbol+direction. The partial unique
index enforces it (so a race or a Redis outage cannot break it); Redis is asked first only
because it is fast, and a Redis "yes" is confirmed against the database (a stale key never
suppresses a real signal). Re-storing the same signal bar is a no-op (idempotent backfills).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.tables import (
    ACTIVE_STATUSES,
    ai_signals_mtf,
    mtf_entry_analysis_history,
)
from alphapulse_dagster.events import NewEvent, append_events
from alphapulse_dagster.signal_cache import SignalCache
from alphapulse_dagster.trading_session import market_session

log = logging.getLogger(__name__)

# the columns a refined signal carries into ai_signals_mtf (the store adds id, status,
# expiry and created_at)
SIGNAL_FIELDS: tuple[str, ...] = (
    "symbol",
    "direction",
    "signal_timeframe",
    "entry_timeframe",
    "timestamp",
    "signal_confidence",
    "model_heads_analysis",
    "market_price",
    "entry_price",
    "stop_loss",
    "take_profits",
    "targets_r",
    "risk_reward_ratio",
    "entry_strategy",
    "entry_pattern",
    "entry_confidence",
    "atr",
    "entry_improvement_bps",
    "fallback_reason",
    "htf_alignment",
    "htf_agreement",
)


@dataclass
class StoreStats:
    stored: int = 0
    duplicates_skipped: int = 0  # another active signal for the symbol+direction
    already_stored: int = 0  # this signal bar was stored by an earlier run
    stored_ids: list[str] = field(default_factory=list)


def _insert(connection: Connection, table: Any) -> Any:
    return (pg_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)


def signal_created_event(row: Mapping[str, Any], received_at: datetime) -> NewEvent:
    """The SIGNAL_CREATED an MTF signal appends, shaped like the indicator's (SPEC §16)."""
    timestamp: datetime = row["timestamp"]
    payload = {
        "event": "SIGNAL_CREATED",
        "signal_id": row["signal_id"],
        "symbol": row["symbol"],
        "direction": row["direction"],
        "timeframe": row["signal_timeframe"],
        "entry_timeframe": row["entry_timeframe"],
        "time": timestamp.isoformat(),
        "htf_alignment": row["htf_alignment"],
        "session": market_session(timestamp),
        "market_state": row.get("htf_agreement") or "UNKNOWN",
        "entry_price": row["entry_price"],
        "stop_loss": row["stop_loss"],
        "targets": row["take_profits"],
        "signal_confidence": row["signal_confidence"],
        "entry_strategy": row["entry_strategy"],
    }
    return NewEvent(
        source="alphapulse",
        event_type="SIGNAL_CREATED",
        signal_id=row["signal_id"],
        symbol=row["symbol"],
        event_time=timestamp,
        payload=payload,
        idempotency_key=f"alphapulse:{row['signal_id']}:SIGNAL_CREATED",
        trade_id=None,
        received_at=received_at,
    )


def active_at(
    connection: Connection, symbol: str, direction: str, at: datetime, signal_id: str | None = None
) -> str | None:
    """The signal of symbol+direction that was active at ``at`` (placed before it and not
    yet closed or expired by then), if any. Time-aware so that re-running a historical
    window sees the same history the live run saw. With ``signal_id`` (the id Redis named)
    it is a primary-key lookup confirming that one signal."""
    s = ai_signals_mtf.c
    query = select(s.signal_id).where(
        s.symbol == symbol,
        s.direction == direction,
        s.timestamp < at,
        or_(s.status.in_(ACTIVE_STATUSES), s.resolved_at > at),
    )
    if signal_id is not None:
        query = query.where(s.signal_id == signal_id)
    return connection.execute(query.limit(1)).scalar()


def _history_row(signal: Mapping[str, Any], signal_id: str | None, now: datetime) -> dict:
    return {
        "signal_id": signal_id,
        "symbol": signal["symbol"],
        "direction": signal["direction"],
        "signal_timeframe": signal["signal_timeframe"],
        "entry_timeframe": signal["entry_timeframe"],
        "timestamp": signal["timestamp"],
        "entry_strategy": signal["entry_strategy"],
        "entry_pattern": signal["entry_pattern"],
        "analysis": signal.get("entry_analysis") or {},
        "created_at": now,
    }


def _record_history(connection: Connection, row: dict) -> None:
    statement = _insert(connection, mtf_entry_analysis_history).values(**row)
    update = {"signal_id": statement.excluded.signal_id}
    if row["signal_id"] is None:  # a skipped signal never un-links a stored analysis
        connection.execute(statement.on_conflict_do_nothing())
        return
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["symbol", "direction", "signal_timeframe", "timestamp"],
            set_=update,
        )
    )


def store_signals(
    engine: Engine,
    signals: Iterable[Mapping[str, Any]],
    cache: SignalCache,
    now: datetime,
    entry_valid_bars: int,
    timeframe_duration: Any,
) -> StoreStats:
    """Store refined signals (rows of :func:`signal_generation.generate_signals`) in time
    order. ``timeframe_duration(tf) -> timedelta`` gives the entry bar length for the
    expiry (``timestamp + entry_valid_bars`` entry bars)."""
    stats = StoreStats()
    for signal in sorted(signals, key=lambda s: (s["timestamp"], s["symbol"], s["direction"])):
        symbol, direction = signal["symbol"], signal["direction"]
        # deterministic per signal bar (signal_generation.signal_id): re-runs are idempotent
        signal_id = signal["signal_id"]
        cached = cache.active_signal(symbol, direction)  # fast path; the database decides
        with engine.begin() as connection:
            if connection.execute(
                select(ai_signals_mtf.c.signal_id).where(ai_signals_mtf.c.signal_id == signal_id)
            ).scalar():
                stats.already_stored += 1
                continue
            at = signal["timestamp"]
            blocking = (
                cached
                if cached
                and cached != signal_id
                and active_at(connection, symbol, direction, at, cached)
                else active_at(connection, symbol, direction, at)
            )
            if blocking:
                _record_history(connection, _history_row(signal, None, now))
                stats.duplicates_skipped += 1
                continue
            expiry: timedelta = entry_valid_bars * timeframe_duration(signal["entry_timeframe"])
            row = {field_: signal.get(field_) for field_ in SIGNAL_FIELDS}
            if signal.get("refinement_error"):
                row["fallback_reason"] = f"{row['fallback_reason']}: {signal['refinement_error']}"
            row.update(
                signal_id=signal_id,
                status="PENDING",
                expires_at=signal["timestamp"] + expiry,
                created_at=now,
            )
            inserted = connection.execute(
                _insert(connection, ai_signals_mtf)
                .values(**row)
                .on_conflict_do_nothing()
                .returning(ai_signals_mtf.c.signal_id)
            ).scalar()
            if inserted is None:
                exists = connection.execute(
                    select(ai_signals_mtf.c.signal_id).where(
                        ai_signals_mtf.c.signal_id == signal_id
                    )
                ).scalar()
                if exists:
                    stats.already_stored += 1
                else:
                    _record_history(connection, _history_row(signal, None, now))
                    stats.duplicates_skipped += 1
                continue
            _record_history(connection, _history_row(signal, signal_id, now))
            append_events(connection, [signal_created_event(row, now)], received_at=now)
        stats.stored += 1
        stats.stored_ids.append(signal_id)
        cache.remember(signal_id, symbol, direction, row)
    if stats.duplicates_skipped:
        log.info("skipped %d signals: an active signal already exists", stats.duplicates_skipped)
    return stats
