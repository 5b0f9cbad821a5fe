"""Storing MTF signals: one transaction, de-duplication enforced by the database (Redis
first), idempotent re-runs, concurrent writers, a dead Redis."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import ai_signals_mtf, mtf_entry_analysis_history, signal_events
from alphapulse_dagster.market.timeframes import duration
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.signal_generation import signal_id
from alphapulse_dagster.signals.signal_store import store_signals
from tests.signal_factory import T0, refined_signal
from tests.test_signal_cache import closed_port


def store(engine: sa.Engine, signals: list[dict], cache: SignalCache | None = None):
    return store_signals(engine, signals, cache or SignalCache(None), T0, 12, duration)


def table_count(engine: sa.Engine, table: sa.Table, *where) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).select_from(table).where(*where)
            ).scalar_one()
        )


def test_store_writes_signal_history_and_event_together(engine: sa.Engine) -> None:
    stats = store(engine, [refined_signal()])
    assert (stats.stored, stats.duplicates_skipped, stats.already_stored) == (1, 0, 0)
    expected_id = signal_id("BTCUSD", "4h", T0, "LONG")
    assert stats.stored_ids == [expected_id]
    with engine.connect() as connection:
        row = connection.execute(sa.select(ai_signals_mtf)).one()
        event = connection.execute(sa.select(signal_events)).one()
        history = connection.execute(sa.select(mtf_entry_analysis_history)).one()
    assert row.status == "PENDING" and row.expires_at == T0 + timedelta(hours=12)
    assert row.take_profits == [8120.0, 8200.0, 8360.0]
    assert event.event_type == "SIGNAL_CREATED" and event.signal_id == expected_id
    assert event.source == "alphapulse" and event.event_time == T0
    assert event.payload["htf_alignment"] == {"1d": "BULLISH"}
    assert event.payload["session"] == "ASIA"  # 04:00 UTC
    assert history.signal_id == expected_id and history.analysis["chosen"] == "FIBONACCI_618"


def test_rerun_is_idempotent_and_active_duplicates_are_skipped(engine: sa.Engine) -> None:
    first = store(engine, [refined_signal()])
    again = store(engine, [refined_signal()])
    assert (again.stored, again.already_stored) == (0, 1)
    later = refined_signal(timestamp=T0 + timedelta(hours=4))
    short = refined_signal(direction="SHORT", timestamp=T0 + timedelta(hours=4))
    third = store(engine, [later, short])
    assert (third.stored, third.duplicates_skipped) == (1, 1)  # the SHORT is new
    assert table_count(engine, ai_signals_mtf) == 2
    assert table_count(engine, signal_events) == 2
    # every analysis is kept, the skipped one without a signal id
    assert table_count(engine, mtf_entry_analysis_history) == 3
    assert (
        table_count(
            engine, mtf_entry_analysis_history, mtf_entry_analysis_history.c.signal_id.is_(None)
        )
        == 1
    )
    assert first.stored_ids[0] not in third.stored_ids


@pytest.mark.postgres
def test_two_concurrent_writers_store_one_active_signal(pg_url: str) -> None:
    """Two processes' worth of writers race on different bars of the same symbol+direction:
    the partial unique index lets exactly one become active."""
    engines = [make_engine(pg_url), make_engine(pg_url)]
    barrier = threading.Barrier(2)
    results = []

    def writer(engine: sa.Engine, hours: int) -> None:
        barrier.wait()
        results.append(store(engine, [refined_signal(timestamp=T0 + timedelta(hours=hours))]))

    threads = [threading.Thread(target=writer, args=(engines[i], 4 * i)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.stored for r in results) == [0, 1]
    assert sum(r.duplicates_skipped for r in results) == 1
    active = table_count(
        engines[0], ai_signals_mtf, ai_signals_mtf.c.status.in_(("PENDING", "CONFIRMED"))
    )
    assert active == 1
    assert table_count(engines[0], signal_events) == 1
    for engine in engines:
        engine.dispose()


@pytest.mark.redis
def test_redis_first_then_database_confirms(
    engine: sa.Engine, redis_url: str, redis_namespace: str
) -> None:
    cache = SignalCache(redis_url, namespace=redis_namespace)
    stats = store(engine, [refined_signal()], cache)
    signal_id = stats.stored_ids[0]
    assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] == signal_id
    assert 3590 <= (cache.ttl(signal_id) or 0) <= 3600
    # a stale marker (its signal is no longer active in the database) must not block
    with engine.begin() as connection:
        connection.execute(
            sa.update(ai_signals_mtf).values(status="CLOSED", status_reason="TARGET")
        )
    later = store(engine, [refined_signal(timestamp=T0 + timedelta(hours=8))], cache)
    assert later.stored == 1
    assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] == later.stored_ids[0]


def test_dead_redis_still_stores_and_never_duplicates(engine: sa.Engine) -> None:
    cache = SignalCache(f"redis://127.0.0.1:{closed_port()}/0")
    stats = store(
        engine, [refined_signal(), refined_signal(timestamp=T0 + timedelta(hours=4))], cache
    )
    assert (stats.stored, stats.duplicates_skipped) == (1, 1)
    assert cache.stats.errors == 1  # then backing off
    assert table_count(engine, ai_signals_mtf) == 1
