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
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Engine, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.tables import (
    ACTIVE_STATUSES,
    ai_signals_mtf,
    mtf_entry_analysis_history,
)
from alphapulse_dagster.market.trading_session import market_session
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.sync.events import NewEvent, append_events

log = logging.getLogger(__name__)
_INSERT_CHUNK = 500  # rows per multi-row INSERT (SQLite's bound-parameter limit)

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


def active_pairs_at(
    connection: Connection, pairs: set[tuple[str, str]], at: datetime
) -> set[tuple[str, str]]:
    """The (symbol, direction) pairs among ``pairs`` that had an active signal at ``at``
    (placed before it and not yet closed or expired by then). Time-aware, so re-running a
    historical window sees the same history the live run saw; one indexed query."""
    if not pairs:
        return set()
    s = ai_signals_mtf.c
    rows = connection.execute(
        select(s.symbol, s.direction)
        .where(
            s.symbol.in_(sorted({symbol for symbol, _ in pairs})),
            s.timestamp < at,
            or_(s.status.in_(ACTIVE_STATUSES), s.resolved_at > at),
        )
        .distinct()
    ).all()
    return {(symbol, direction) for symbol, direction in rows} & pairs


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


def _record_histories(connection: Connection, rows: list[dict]) -> None:
    """Upsert analysis rows; a skipped signal (no id) never un-links a stored analysis."""
    linked = [r for r in rows if r["signal_id"] is not None]
    unlinked = [r for r in rows if r["signal_id"] is None]
    if linked:
        statement = _insert(connection, mtf_entry_analysis_history)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["symbol", "direction", "signal_timeframe", "timestamp"],
                set_={"signal_id": statement.excluded.signal_id},
            ),
            linked,
        )
    if unlinked:
        connection.execute(
            _insert(connection, mtf_entry_analysis_history).on_conflict_do_nothing(), unlinked
        )


def _signal_row(signal: Mapping[str, Any], now: datetime, expiry: timedelta) -> dict[str, Any]:
    row = {field_: signal.get(field_) for field_ in SIGNAL_FIELDS}
    if signal.get("refinement_error"):
        row["fallback_reason"] = f"{row['fallback_reason']}: {signal['refinement_error']}"
    row.update(
        signal_id=signal["signal_id"],
        status="PENDING",
        expires_at=signal["timestamp"] + expiry,
        created_at=now,
    )
    return row


def _store_bar(
    engine: Engine,
    bar_signals: list[Mapping[str, Any]],
    cache: SignalCache,
    now: datetime,
    entry_valid_bars: int,
    timeframe_duration: Any,
    stats: StoreStats,
) -> None:
    """Store the signals of one signal time in one transaction, set-based."""
    at = bar_signals[0]["timestamp"]
    pairs = {(s["symbol"], s["direction"]) for s in bar_signals}
    cached = cache.active_signals(sorted(pairs))  # Redis first: one MGET for the bar
    with engine.begin() as connection:
        ids = [s["signal_id"] for s in bar_signals]
        existing = set(
            connection.execute(
                select(ai_signals_mtf.c.signal_id).where(ai_signals_mtf.c.signal_id.in_(ids))
            ).scalars()
        )
        stats.already_stored += len(existing)
        fresh = [s for s in bar_signals if s["signal_id"] not in existing]
        blocked = active_pairs_at(connection, {(s["symbol"], s["direction"]) for s in fresh}, at)
        # a Redis marker the database does not confirm is stale and ignored
        stale = {pair for pair, sid in cached.items() if sid and pair not in blocked}
        if stale:
            log.debug("ignoring %d stale Redis active markers", len(stale))
        candidates = [s for s in fresh if (s["symbol"], s["direction"]) not in blocked]
        rows = [
            _signal_row(s, now, entry_valid_bars * timeframe_duration(s["entry_timeframe"]))
            for s in candidates
        ]
        inserted: set[str] = set()
        for offset in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[offset : offset + _INSERT_CHUNK]
            inserted.update(
                connection.execute(
                    _insert(connection, ai_signals_mtf)
                    .values(chunk)
                    .on_conflict_do_nothing()  # the partial unique index: a race lost
                    .returning(ai_signals_mtf.c.signal_id)
                ).scalars()
            )
        stored_rows = [r for r in rows if r["signal_id"] in inserted]
        skipped = [s for s in fresh if s["signal_id"] not in inserted]
        _record_histories(
            connection,
            [_history_row(s, s["signal_id"], now) for s in candidates if s["signal_id"] in inserted]
            + [_history_row(s, None, now) for s in skipped],
        )
        append_events(
            connection, [signal_created_event(r, now) for r in stored_rows], received_at=now
        )
    stats.duplicates_skipped += len(skipped)
    stats.stored += len(stored_rows)
    stats.stored_ids.extend(r["signal_id"] for r in stored_rows)
    cache.remember_many(stored_rows)


def store_signals(
    engine: Engine,
    signals: Iterable[Mapping[str, Any]],
    cache: SignalCache,
    now: datetime,
    entry_valid_bars: int,
    timeframe_duration: Any,
) -> StoreStats:
    """Store refined signals (rows of :func:`signal_generation.generate_signals`) in
    signal-time order, one transaction per signal time (a crash leaves a bar's signals
    all stored or none). ``timeframe_duration(tf) -> timedelta`` gives the entry bar
    length for the expiry (``timestamp + entry_valid_bars`` entry bars). Signal ids are
    deterministic per signal bar, so re-runs are idempotent."""
    stats = StoreStats()
    ordered = sorted(signals, key=lambda s: (s["timestamp"], s["symbol"], s["direction"]))
    for _, bar in groupby(ordered, key=lambda s: s["timestamp"]):
        _store_bar(engine, list(bar), cache, now, entry_valid_bars, timeframe_duration, stats)
    if stats.duplicates_skipped:
        log.info("skipped %d signals: an active signal already exists", stats.duplicates_skipped)
    return stats
