"""The Redis signal cache: ``signal:{id}`` (JSON, TTL) and one active-signal key per
symbol+direction. Redis is an accelerator, never the authority.

Every call has a short timeout and no retries; after a failure the cache backs off for
``backoff_seconds`` (calls return "unknown" at once), so a dead or black-holed Redis costs
one timeout per back-off period, not one per call. Nothing here raises to the caller: a
Redis problem degrades to database-only and increments ``stats.errors``. That Redis is
absent or down is logged once per outage, not per call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    errors: int = 0
    skipped_while_down: int = 0


class SignalCache:
    """``url`` None/empty ⇒ no Redis (database alone, said once)."""

    def __init__(
        self,
        url: str | None,
        ttl_seconds: int = 3600,
        namespace: str = "",
        timeout_seconds: float = 0.1,
        backoff_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.namespace = namespace
        self.backoff_seconds = backoff_seconds
        self.stats = CacheStats()
        self._monotonic = monotonic
        self._down_until = 0.0
        self._client: Any = None
        if not url:
            log.info("Redis not configured: the database alone is authoritative")
            return
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # redis-py 8 retries 10 times with backoff by default; one short try is what we want
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )

    @property
    def configured(self) -> bool:
        return self._client is not None

    def signal_key(self, signal_id: str) -> str:
        return f"{self.namespace}signal:{signal_id}"

    def active_key(self, symbol: str, direction: str) -> str:
        return f"{self.namespace}active:{symbol}:{direction}"

    def _call(self, operation: Callable[[Any], Any]) -> tuple[bool, Any]:
        """Run ``operation(client)``; (False, None) when Redis is absent, backing off or fails."""
        if self._client is None:
            return False, None
        if self._monotonic() < self._down_until:
            self.stats.skipped_while_down += 1
            return False, None
        try:
            result = operation(self._client)
        except Exception as exc:  # any Redis failure means "database only"
            self.stats.errors += 1
            if self._down_until == 0.0:
                log.warning(
                    "Redis unavailable (%s); database only, retrying in %.0fs",
                    type(exc).__name__,
                    self.backoff_seconds,
                )
            self._down_until = self._monotonic() + self.backoff_seconds
            return False, None
        if self._down_until:
            log.info("Redis is back")
            self._down_until = 0.0
        return True, result

    def active_signals(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """Active signal ids for many symbol+direction pairs in one MGET (None = unknown)."""
        if not pairs:
            return {}
        keys = [self.active_key(symbol, direction) for symbol, direction in pairs]
        ok, values = self._call(lambda r: r.mget(keys))
        if not ok:
            self.stats.misses += len(pairs)
            return dict.fromkeys(pairs)
        found: dict[tuple[str, str], str | None] = {}
        for pair, value in zip(pairs, values, strict=True):
            if value is None:
                self.stats.misses += 1
                found[pair] = None
            else:
                self.stats.hits += 1
                found[pair] = value.decode() if isinstance(value, bytes) else str(value)
        return found

    def remember_many(self, documents: Sequence[Mapping[str, Any]]) -> bool:
        """Cache many signal documents (each with signal_id, symbol, direction) in one
        pipeline and mark each active."""
        if not documents:
            return True

        def write(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for doc in documents:
                body = json.dumps(doc, default=str, sort_keys=True)
                pipe.set(self.signal_key(doc["signal_id"]), body, ex=self.ttl_seconds)
                pipe.set(
                    self.active_key(doc["symbol"], doc["direction"]),
                    doc["signal_id"],
                    ex=self.ttl_seconds,
                )
            pipe.execute()

        ok, _ = self._call(write)
        if ok:
            self.stats.writes += len(documents)
        return ok

    def forget_many(self, signals: Sequence[tuple[str, str, str]]) -> bool:
        """Drop each ``(symbol, direction, signal_id)``'s active marker if it still points at
        that signal (it left the active states): one MGET and one DEL for a whole window."""
        if not signals:
            return True
        keys = [self.active_key(symbol, direction) for symbol, direction, _ in signals]

        def drop(client: Any) -> None:
            current = client.mget(keys)
            ours = {
                key
                for key, value, (_, _, signal_id) in zip(keys, current, signals, strict=True)
                if value is not None and value.decode() == signal_id
            }
            if ours:
                client.delete(*ours)

        ok, _ = self._call(drop)
        return ok

    def cached_signal(self, signal_id: str) -> dict[str, Any] | None:
        ok, value = self._call(lambda r: r.get(self.signal_key(signal_id)))
        if not ok or value is None:
            return None
        return dict(json.loads(value))

    def ttl(self, signal_id: str) -> int | None:
        ok, value = self._call(lambda r: r.ttl(self.signal_key(signal_id)))
        return int(value) if ok and value is not None else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
