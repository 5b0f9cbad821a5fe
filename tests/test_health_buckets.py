"""The health report's running per-hour aggregates (migration 0003's triggers) always equal
the same aggregates computed from scratch over ``signals`` and the open ``signal_gaps``,
whatever writes the registry — and so does the report, at any window edge."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from hybrid_sync_support import CONFIG, T0, append, created, entry, event

from alphapulse_dagster.db.tables import (
    signal_gap_buckets,
    signal_gaps,
    signal_health_buckets,
    signals,
)
from alphapulse_dagster.sync.gap_rules import GAP_TYPES
from alphapulse_dagster.sync.health import health_report, open_gaps_by_type, signal_moment
from alphapulse_dagster.sync.health_buckets import (
    BUCKET_SECONDS,
    pg_trigger_ddl,
    sqlite_trigger_ddl,
)
from alphapulse_dagster.sync.projection import rebuild_registry
from alphapulse_dagster.sync.sync_cycle import SyncRequest, run_sync

H = timedelta(hours=1)
NOW = T0 + timedelta(days=20)


def _bucket(row: Any) -> int | None:
    moment = row.signal_time or row.created_at or row.confirmed_at
    return None if moment is None else math.floor(moment.timestamp() / 3600)


def _scaled(value: float) -> int:
    return round(value * 1e9)


def _moment(row: Any) -> datetime | None:
    return row.signal_time or row.created_at or row.confirmed_at


def _scratch(conn: sa.Connection) -> tuple[dict[int, tuple[int, ...]], Counter[tuple[Any, ...]]]:
    rows = {r.signal_id: r for r in conn.execute(sa.select(signals))}
    health: dict[int, list[int]] = {}
    for row in rows.values():
        bucket = _bucket(row)
        if bucket is None:
            continue
        agg = health.setdefault(bucket, [0, 0, 0, 0, 0])
        agg[0] += 1
        agg[1] += _scaled(100.0 if row.health_score is None else row.health_score)
        if row.data_confidence is not None:
            agg[2] += _scaled(row.data_confidence)
            agg[3] += 1
        agg[4] += row.status in ("CONFIRMED", "CLOSED")
    gaps: Counter[tuple[Any, ...]] = Counter()
    for gap in conn.execute(sa.select(signal_gaps).where(signal_gaps.c.resolved_at.is_(None))):
        row = rows.get(gap.signal_id)
        bucket = None if row is None else _bucket(row)
        if bucket is not None:
            gaps[(bucket, gap.gap_type, gap.kind, bool(gap.fillable))] += 1
    return {b: tuple(v) for b, v in health.items()}, gaps


def _stored(conn: sa.Connection) -> tuple[dict[int, tuple[int, ...]], Counter[tuple[Any, ...]]]:
    health = {
        r.bucket: (r.signals, r.score_sum, r.confidence_sum, r.confidence_n, r.confirmed)
        for r in conn.execute(sa.select(signal_health_buckets))
        if any((r.signals, r.score_sum, r.confidence_sum, r.confidence_n, r.confirmed))
    }
    gaps: Counter[tuple[Any, ...]] = Counter()
    for r in conn.execute(sa.select(signal_gap_buckets)):
        if r.gaps:
            gaps[(r.bucket, r.gap_type, r.kind, bool(r.fillable))] += r.gaps
    return health, gaps


def _scratch_report(conn: sa.Connection, now: datetime) -> dict[str, Any]:
    """The report's numbers from scratch: every signal in the window, every open gap."""
    since = now - timedelta(days=CONFIG.hybrid_sync.health_window_days)
    rows = {
        r.signal_id: r
        for r in conn.execute(sa.select(signals))
        if _moment(r) is not None and _moment(r) >= since  # type: ignore[operator]
    }
    by_type = dict.fromkeys(GAP_TYPES, 0)
    by_kind = {"actionable": 0, "expected": 0}
    manual = 0
    for gap in conn.execute(sa.select(signal_gaps).where(signal_gaps.c.resolved_at.is_(None))):
        if gap.signal_id in rows:
            by_type[gap.gap_type] += 1
            by_kind[gap.kind] += 1
            manual += not gap.fillable
    scores = [_scaled(100.0 if r.health_score is None else r.health_score) for r in rows.values()]
    confidences = [
        _scaled(r.data_confidence) for r in rows.values() if r.data_confidence is not None
    ]
    confirmed = sum(r.status in ("CONFIRMED", "CLOSED") for r in rows.values())
    uncovered = by_type["no_signal_created"]
    return {
        "signals": len(rows),
        "total_gaps": sum(by_type.values()),
        "health_score": float(round(Fraction(sum(scores), len(scores) * 10**9), 2))
        if scores
        else 100.0,
        "data_confidence": float(round(Fraction(sum(confidences), len(confidences) * 10**9), 4))
        if confidences
        else None,
        "signal_coverage": round((confirmed - uncovered) / confirmed, 4) if confirmed else None,
        "manual_intervention": manual,
        "gap_breakdown": by_type,
        "kind_breakdown": by_kind,
        "confirmed_signals": confirmed,
    }


def _open_by_type(conn: sa.Connection, unbucketed: bool = False) -> Counter[str]:
    """Open gaps of registry signals by type, counted row by row (``unbucketed``: only
    those of signals without a moment)."""
    query = (
        sa.select(signal_gaps.c.gap_type)
        .join(signals, signals.c.signal_id == signal_gaps.c.signal_id)
        .where(signal_gaps.c.resolved_at.is_(None))
    )
    if unbucketed:
        query = query.where(signal_moment().is_(None))
    return Counter(gap_type for (gap_type,) in conn.execute(query))


def _check(engine: sa.Engine, nows: list[datetime]) -> None:
    with engine.connect() as conn:
        assert _stored(conn) == _scratch(conn)
        # the job's all-time open-gap counts (gap_report metadata), from the aggregates
        direct = _open_by_type(conn)
        assert open_gaps_by_type(conn) == {name: direct[name] for name in GAP_TYPES}
        for now in nows:
            report = health_report(conn, now, CONFIG.hybrid_sync)
            got = {key: getattr(report, key) for key in _scratch_report(conn, now)}
            assert got == _scratch_report(conn, now), now


def test_running_aggregates_equal_a_from_scratch_computation(engine: sa.Engine) -> None:
    rng = random.Random(3)
    trades = []
    for n in range(60):
        at = T0 - timedelta(days=12) + timedelta(minutes=rng.randrange(0, 40 * 24 * 60))
        trades.append((f"{at:%Y%m%d_%H%M%S}_{'LONG' if n % 2 else 'SHORT'}_{n}", at))
    opening = []
    for n, (tid, at) in enumerate(trades):
        if n % 3:
            opening.append(created(tid, at))
        if n % 5 != 4:
            opening.append(entry(tid, at + H))
        if n % 7 == 0:
            opening.append(event("MFE_UPDATE", tid, at + 2 * H, mfe=0.5, mae=0.2))
    # a signal without a moment (no SIGNAL_CREATED, no ENTRY, an id Tier 3 cannot read):
    # in no bucket, its open gaps still count among the open gaps
    opening.append(event("MFE_UPDATE", "no-moment-1", T0, mfe=0.4, mae=0.1))
    append(engine, *opening)
    # window edges: whole hours, mid-hour, before and after every signal
    nows = [NOW, NOW + timedelta(minutes=17, seconds=3), NOW + timedelta(days=9, minutes=31)]
    nows += [at + timedelta(days=30, minutes=m) for _, at in trades[:5] for m in (-1, 0, 1)]
    nows.append(datetime(2030, 1, 1, tzinfo=UTC))
    _check(engine, nows)

    run_sync(engine, CONFIG, NOW, "s1")
    _check(engine, nows)
    with engine.connect() as conn:
        # (an MFE_UPDATE alone folds to a running trade with nothing known: every gap)
        assert _open_by_type(conn, unbucketed=True) == dict.fromkeys(GAP_TYPES, 1)

    # late SIGNAL_CREATED (timed before the entry: the moment and bucket move, with the gaps)
    late = [created(tid, at - 3 * H) for n, (tid, at) in enumerate(trades) if n % 3 == 0]
    late += [event("CANCELLED", tid, at + 5 * H) for tid, at in trades[10:14]]
    append(engine, *late)
    run_sync(engine, CONFIG, NOW + H, "s2", SyncRequest([e.signal_id for e in late]))
    _check(engine, nows)
    run_sync(engine, CONFIG, NOW + 2 * H, "s3", SyncRequest(full=True))
    _check(engine, nows)

    # other writers: a rebuild (delete + insert), direct gap and registry edits, deletions
    with engine.begin() as conn:
        rebuild_registry(conn, NOW + 3 * H)
    _check(engine, nows)
    some = [f"BTCUSDT:{tid}" for tid, _ in trades[20:30]]
    with engine.begin() as conn:
        conn.execute(
            sa.update(signal_gaps)
            .where(signal_gaps.c.signal_id.in_(some[:4]))
            .values(resolved_at=NOW + 3 * H)
        )
        conn.execute(
            sa.update(signals)
            .where(signals.c.signal_id.in_(some[4:8]))
            .values(signal_time=T0 + timedelta(days=3, minutes=7), health_score=42.5)
        )
        conn.execute(
            sa.update(signals).values(data_confidence=None).where(signals.c.signal_id == some[8])
        )
        conn.execute(sa.delete(signal_gaps).where(signal_gaps.c.signal_id == some[9]))
        conn.execute(sa.delete(signals).where(signals.c.signal_id == some[5]))
    _check(engine, nows)
    run_sync(engine, CONFIG, NOW + 4 * H, "s4", SyncRequest(full=True))
    _check(engine, nows)


def test_the_installed_triggers_are_the_ones_the_code_generates(engine: sa.Engine) -> None:
    """The bucket triggers come from ``health_buckets`` (migration 0009): what the database
    runs is exactly what the report's own constants generate today."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            stored = conn.execute(
                sa.text(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'trg_%'"
                )
            ).scalars()
            assert sorted(stored) == sorted(sqlite_trigger_ddl())
            return
        bodies = dict(
            conn.execute(
                sa.text(
                    "SELECT proname, prosrc FROM pg_proc WHERE proname IN ("
                    "'alphapulse_health_bucket', 'alphapulse_signals_health', "
                    "'alphapulse_gaps_health')"
                )
            ).all()
        )
    generated = pg_trigger_ddl()
    assert bodies["alphapulse_health_bucket"] == generated[0].split("$$")[1]
    assert bodies["alphapulse_signals_health"] == generated[1].split("$body$")[1]
    assert bodies["alphapulse_gaps_health"] == generated[2].split("$body$")[1]
    assert f"/ {BUCKET_SECONDS})" in bodies["alphapulse_health_bucket"]
