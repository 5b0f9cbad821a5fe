"""The Redis signal cache against the real Redis, and against a dead one."""

from __future__ import annotations

import socket
import time

import pytest

from alphapulse_dagster.signals.signal_cache import SignalCache

pytestmark = pytest.mark.redis


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def test_remember_sets_ttl_and_active_key(redis_url: str, redis_namespace: str) -> None:
    cache = SignalCache(redis_url, ttl_seconds=3600, namespace=redis_namespace)
    doc = {"signal_id": "abc", "symbol": "BTCUSD", "direction": "LONG", "entry_price": 1.5}
    assert cache.remember_many([doc])
    assert cache.cached_signal("abc") == doc
    ttl = cache.ttl("abc")
    assert ttl is not None and 3590 <= ttl <= 3600
    assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] == "abc"
    assert cache.active_signals([("BTCUSD", "SHORT")])[("BTCUSD", "SHORT")] is None
    cache.forget_many([("BTCUSD", "LONG", "other-id")])  # not ours: kept
    assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] == "abc"
    short = {"signal_id": "def", "symbol": "BTCUSD", "direction": "SHORT"}
    assert cache.remember_many([short])
    assert cache.forget_many([("BTCUSD", "LONG", "abc"), ("BTCUSD", "SHORT", "xyz")])
    found = cache.active_signals([("BTCUSD", "LONG"), ("BTCUSD", "SHORT")])
    assert found == {("BTCUSD", "LONG"): None, ("BTCUSD", "SHORT"): "def"}
    assert cache.stats.errors == 0


def test_dead_redis_is_fast_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    cache = SignalCache(f"redis://127.0.0.1:{closed_port()}/0", backoff_seconds=60)
    started = time.perf_counter()
    for _ in range(50):
        assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] is None
        assert not cache.remember_many(
            [{"signal_id": "x", "symbol": "BTCUSD", "direction": "LONG"}]
        )
    elapsed = time.perf_counter() - started
    # one failed connect, then 99 calls answered from the back-off without touching Redis
    assert cache.stats.errors == 1
    assert cache.stats.skipped_while_down == 99
    assert elapsed < 2.0, f"a dead Redis cost {elapsed:.2f}s for 100 calls"
    assert sum("Redis unavailable" in r.getMessage() for r in caplog.records) == 1


def test_recovers_after_backoff(redis_url: str, redis_namespace: str) -> None:
    now = [0.0]
    cache = SignalCache(
        redis_url, namespace=redis_namespace, backoff_seconds=5, monotonic=lambda: now[0]
    )
    cache._down_until = 5.0  # as if a call had just failed
    assert (
        cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] is None
        and cache.stats.skipped_while_down == 1
    )
    now[0] = 6.0
    assert cache.remember_many([{"signal_id": "id1", "symbol": "BTCUSD", "direction": "LONG"}])
    assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] == "id1"


def test_no_url_means_database_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="alphapulse_dagster.signals.signal_cache"):
        cache = SignalCache(None)
        assert not cache.configured
        assert cache.active_signals([("BTCUSD", "LONG")])[("BTCUSD", "LONG")] is None
        assert not cache.remember_many(
            [{"signal_id": "x", "symbol": "BTCUSD", "direction": "LONG"}]
        )
    assert [r.getMessage() for r in caplog.records] == [
        "Redis not configured: the database alone is authoritative"
    ]
