"""The Redis signal cache as a Dagster resource (optional: empty URL ⇒ database only)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from alphapulse_dagster.signals.signal_cache import SignalCache


class SignalCacheResource(dg.ConfigurableResource):
    """``url`` from ``ALPHAPULSE_REDIS_URL``; empty means no Redis (said once per run)."""

    url: str = Field(default="", description="redis://host:6379/0; empty = no cache")
    ttl_seconds: int = Field(default=3600, description="TTL of signal:{id}")
    namespace: str = Field(default="", description="key prefix (tests, shared Redis)")
    timeout_seconds: float = Field(default=0.1, description="per-call socket timeout")
    backoff_seconds: float = Field(default=30.0, description="pause after a Redis failure")
    _cache: SignalCache | None = PrivateAttr(default=None)

    def get_cache(self) -> SignalCache:
        if self._cache is None:
            self._cache = SignalCache(
                self.url or None,
                ttl_seconds=self.ttl_seconds,
                namespace=self.namespace,
                timeout_seconds=self.timeout_seconds,
                backoff_seconds=self.backoff_seconds,
            )
        return self._cache

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._cache is not None:
            self._cache.close()
