"""Storing MTF signals: ``ai_signals_mtf`` + ``mtf_entry_analysis_history`` + a
SIGNAL_CREATED event, a whole window in one transaction; de-duplicated; cached in Redis.

De-duplication: never two *active* signals for one symbol+direction. The partial unique
index enforces it (so a race or a Redis outage cannot break it); Redis is asked first only
because it is fast, and a Redis "yes" is confirmed against the database (a stale key never
suppresses a real signal). Re-storing the same signal bar is a no-op (idempotent backfills).
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alphapulse_dagster.db.tables import (
    ACTIVE_STATUSES,
    ai_signals_mtf,
    mtf_entry_analysis_history,
)
from alphapulse_dagster.market.trading_session import market_session
from alphapulse_dagster.signals.mtf_lifecycle import (
    NO_END,
    LifecycleStats,
    Outlook,
    Timeline,
    active_rows,
    frame_of,
    outlooks,
    stats_by_advance,
    timeline,
    write_changes,
)
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.trade_management import NO_TIME, TradeRule, to_ns
from alphapulse_dagster.signals.window_plan import (
    ALREADY,
    FRESH,
    SKIPPED,
    STORED,
    TAKEN,
    Candidate,
    Holder,
    StoreStats,
    WindowRecord,
    decide,
)
from alphapulse_dagster.sync.events import NewEvent, append_events_in_bulk

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


@dataclass(frozen=True)
class Lifecycle:
    """Advance the lifecycle while storing: at each signal time, then to ``window_end``."""

    rule: TradeRule
    window_end: datetime


def _ns(values: list[Any]) -> list[int]:
    return to_ns(values).tolist() if values else []


def _holders(
    connection: Connection, candidates: list[Candidate], active: list[Any], looks: dict
) -> dict[tuple[str, str], list[Holder]]:
    """Per symbol+direction of the window: its active signals (active until their outcome
    is known in this window, or for good) and those resolved after the first signal time."""
    holders: dict[tuple[str, str], list[Holder]] = {}
    pairs = {c.pair for c in candidates}
    for row in active:
        if (row.symbol, row.direction) in pairs:
            until = looks[row.signal_id].active_until if row.signal_id in looks else NO_END
            holders.setdefault((row.symbol, row.direction), []).append((0, until, NO_TIME))
    s = ai_signals_mtf.c
    resolved = connection.execute(
        select(s.symbol, s.direction, s.timestamp, s.resolved_at).where(
            s.symbol.in_(sorted({symbol for symbol, _ in pairs})),
            s.status.not_in(ACTIVE_STATUSES),
            s.resolved_at > candidates[0].signal["timestamp"],
            s.timestamp < candidates[-1].signal["timestamp"],
        )
    ).all()
    placed, until = _ns([r.timestamp for r in resolved]), _ns([r.resolved_at for r in resolved])
    for r, p, u in zip(resolved, placed, until, strict=True):
        if (r.symbol, r.direction) in pairs:
            holders.setdefault((r.symbol, r.direction), []).append((p, NO_TIME, u))
    return holders


def _stored_in_window(connection: Connection, candidates: list[Candidate]) -> list[Any]:
    s = ai_signals_mtf.c
    return list(
        connection.execute(
            select(s.signal_id, s.symbol, s.direction, s.signal_timeframe, s.timestamp).where(
                s.symbol.in_(sorted({c.row["symbol"] for c in candidates})),
                s.timestamp >= candidates[0].signal["timestamp"],
                s.timestamp <= candidates[-1].signal["timestamp"],
            )
        ).all()
    )


def _stored_ids(connection: Connection, candidates: list[Candidate]) -> set[str]:
    return {r.signal_id for r in _stored_in_window(connection, candidates)}


def _mark_stored_bars(connection: Connection, candidates: list[Candidate]) -> None:
    """``already`` (this id is stored) or ``taken`` (another id holds the bar)."""
    stored = _stored_in_window(connection, candidates)
    ids = {r.signal_id for r in stored}
    bars = {
        (r.symbol, r.direction, r.signal_timeframe, at)
        for r, at in zip(stored, _ns([r.timestamp for r in stored]), strict=True)
    }
    for c in candidates:
        if c.row["signal_id"] in ids:
            c.outcome = ALREADY
        elif (*c.pair, c.row["signal_timeframe"], c.at) in bars:
            c.outcome = TAKEN


def _write(
    connection: Connection,
    candidates: list[Candidate],
    carried: list[Timeline],
    new: list[Timeline],
    advances: list[int],
    now: datetime,
) -> set[str]:
    """Write the window: carried signals' changes, the stored signals with their state at
    the window's end, every analysis, the events in the order one run per signal time
    appends them. Returns the ids a concurrent writer took first (then skipped)."""
    write_changes(connection, carried)
    final = {line.row.signal_id: line.write for line in new if line.write}
    rows = []
    for c in candidates:
        if c.outcome == STORED:
            state = {k: v for k, v in (final.get(c.row["signal_id"]) or {}).items() if k != "sid"}
            rows.append({**c.row, **_UNRESOLVED, **state})
    lost: set[str] = set()
    if rows:  # executemany without RETURNING: the driver pipelines it
        connection.execute(
            _insert(connection, ai_signals_mtf).on_conflict_do_nothing(),  # a race lost
            rows,
        )
        lost = {r["signal_id"] for r in rows} - _stored_ids(connection, candidates)
    for c in candidates:
        if c.row["signal_id"] in lost:
            c.outcome = SKIPPED
    _record_histories(
        connection,
        [
            _history_row(c.signal, c.row["signal_id"] if c.outcome == STORED else None, now)
            for c in candidates
            if c.outcome in (STORED, SKIPPED, TAKEN)
        ],
    )
    keyed = [
        (at, 0, event)
        for line in [*carried, *new]
        if line.row.signal_id not in lost
        for at, event in line.events
    ]
    keyed += [
        (bisect_left(advances, c.at), 1, signal_created_event(c.row, now))
        for c in candidates
        if c.outcome == STORED
    ]
    keyed.sort(key=lambda k: (k[0], k[1]))  # stable: each signal's own order is kept
    append_events_in_bulk(connection, [event for _, _, event in keyed], received_at=now)
    return lost


_UNRESOLVED = {"status_reason": None, "filled_at": None, "resolved_at": None}


def record_signals(
    engine: Engine,
    cache: SignalCache,
    signals: Iterable[Mapping[str, Any]],
    now: datetime,
    expiry: Callable[[str], timedelta],
    lifecycle: Lifecycle | None,
) -> WindowRecord:
    """Store refined signals (rows of :func:`signal_generation.generate_signals`) in one
    transaction, de-duplicated in signal-time order (:mod:`window_plan`). With a
    ``lifecycle``, every stored signal is advanced at each signal time first, then to the
    window's end, exactly as one store and one advance per signal time would: in memory,
    each signal's result written once. ``expiry(entry_timeframe)``: how long a limit entry
    stays valid. Signal ids are deterministic per signal bar, so re-runs are idempotent."""
    ordered = sorted(signals, key=lambda s: (s["timestamp"], s["symbol"], s["direction"]))
    times = _ns([s["timestamp"] for s in ordered])
    candidates = [
        Candidate(s, _signal_row(s, now, expiry(s["entry_timeframe"])), t)
        for s, t in zip(ordered, times, strict=True)
    ]
    cached = cache.active_signals(sorted({c.pair for c in candidates}))  # Redis first
    advances = sorted({*times, *_ns([lifecycle.window_end] if lifecycle else [])})
    with engine.begin() as connection:
        active = active_rows(connection)
        if candidates:
            _mark_stored_bars(connection, candidates)
        tracked = [r for r in active if lifecycle and r.timestamp <= lifecycle.window_end]
        fresh = [SimpleNamespace(**c.row) for c in candidates if c.outcome == FRESH]
        looks: dict[str, Outlook] = {}
        if lifecycle and (tracked or fresh):
            both = [*tracked, *fresh]
            found = outlooks(connection, frame_of(both), lifecycle.rule, lifecycle.window_end)
            looks = {r.signal_id: o for r, o in zip(both, found, strict=True)}
        if candidates:
            holders = _holders(connection, candidates, active, looks)
            decide(candidates, holders, {sid: o.active_until for sid, o in looks.items()})
        # a Redis marker the database does not confirm is stale and ignored
        confirmed = {(r.symbol, r.direction) for r in active}
        if any(sid and pair not in confirmed for pair, sid in cached.items()):
            log.debug("ignoring stale Redis active markers")
        first_seen = _ns([r.timestamp for r in tracked])
        carried = [
            timeline(r, looks[r.signal_id], advances, bisect_left(advances, at))
            for r, at in zip(tracked, first_seen, strict=True)
        ]
        new = [
            timeline(
                SimpleNamespace(**{**c.row, **_UNRESOLVED}),
                looks[c.row["signal_id"]],
                advances,
                bisect_right(advances, c.at),  # advanced from the next signal time on
            )
            for c in candidates
            if lifecycle and c.outcome == STORED
        ]
        lost = _write(connection, candidates, carried, new, advances, now)
    lines = [*carried, *(line for line in new if line.row.signal_id not in lost)]
    cache.remember_many([c.row for c in candidates if c.outcome == STORED])
    cache.forget_many(
        [
            (line.row.symbol, line.row.direction, line.row.signal_id)
            for line in lines
            if line.left_active
        ]
    )
    record = _window_record(candidates, lines, advances if lifecycle else [])
    if record.store.duplicates_skipped:
        log.info(
            "skipped %d signals: an active signal already exists", record.store.duplicates_skipped
        )
    return record


def _window_record(
    candidates: list[Candidate], lines: list[Timeline], advances: list[int]
) -> WindowRecord:
    """Totals and each day's share: stores on their signal's day, each advance's changes
    on its day (the last, to the window's end, on the day that ends there)."""
    record = WindowRecord(StoreStats(), LifecycleStats())
    steps = stats_by_advance(lines, len(advances))
    for i, (at, step) in enumerate(zip(advances, steps, strict=True)):
        day = pd.Timestamp(at - (1_000 if i == len(advances) - 1 else 0), tz="UTC")
        record.add_lifecycle(step)
        record.day(day).add_lifecycle(step)
    for c in candidates:
        record.add_store(c.outcome, c.row["signal_id"])
        record.day(c.signal["timestamp"]).add_store(c.outcome, c.row["signal_id"])
    return record


def store_signals(
    engine: Engine,
    signals: Iterable[Mapping[str, Any]],
    cache: SignalCache,
    now: datetime,
    entry_valid_bars: int,
    timeframe_duration: Any,
) -> StoreStats:
    """Store refined signals without advancing any lifecycle (a stored signal stays
    active): :func:`record_signals`. ``timeframe_duration(tf) -> timedelta`` gives the
    entry bar length for the expiry (``timestamp + entry_valid_bars`` entry bars)."""
    return record_signals(
        engine,
        cache,
        signals,
        now,
        lambda timeframe: entry_valid_bars * timeframe_duration(timeframe),
        None,
    ).store
