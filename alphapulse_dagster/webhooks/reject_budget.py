"""How many refused webhooks get a ``webhook_rejects`` row (SPEC §14: an unauthenticated
flood cannot grow the table without bound).

Every refusal is still answered (401, 403, 413, 422); only its row is rationed:

- per source address, a token bucket: ``burst`` rows at once, then
  ``per_source_per_minute``;
- over all sources, another bucket: ``total_per_minute`` (burst of the same size);
- the table holds at most ``max_rows`` rows; beyond that nothing more is written.

A refusal past any of these is *dropped* — counted (``dropped``, shown in ``/healthz``),
not written. Buckets are kept for the :data:`MAX_SOURCES` most recent sources.

A source whose own bucket is empty is *rationed*: :meth:`RejectBudget.turn_away` tells the
server to refuse its next request from the request head, unread (``api/flood_gate.py``),
so a flood costs the server next to nothing once its burst is spent. Only the source's own
bucket decides this — never the total's or the table cap — so a flood from one address
cannot get another address turned away.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_SOURCES = 10_000


@dataclass(frozen=True)
class RejectLimits:
    per_source_per_minute: float = 60.0
    burst: int = 20
    total_per_minute: float = 1200.0
    max_rows: int = 100_000


@dataclass
class _Bucket:
    tokens: float
    at: float
    reading: int = 0  # requests let through by turn_away and still being read and judged

    def refill(self, now: float, per_second: float, capacity: float) -> None:
        self.tokens = min(capacity, self.tokens + (now - self.at) * per_second)
        self.at = now

    def take(self, now: float, per_second: float, capacity: float) -> bool:
        self.refill(now, per_second, capacity)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RejectBudget:
    """Decides, refusal by refusal, whether it gets a row. ``stored`` is the number of rows
    the table held when the server started (set by the writer); every row granted since
    counts on top of it against ``max_rows``."""

    def __init__(self, limits: RejectLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self.stored = 0
        self.granted = 0
        self.dropped = 0
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()
        self._total = _Bucket(float(max(limits.burst, 1)), clock())

    def allow(self, source: str | None) -> bool:
        """True ⇒ write this refusal's row (and count it against the limits)."""
        limits = self.limits
        now = self.clock()
        key = source or "-"
        bucket = self._sources.get(key)
        if bucket is None:
            bucket = self._sources[key] = _Bucket(float(limits.burst), now)
            if len(self._sources) > MAX_SOURCES:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(key)
        capacity = float(max(limits.burst, 1))
        allowed = (
            self.stored + self.granted < limits.max_rows
            and bucket.take(now, limits.per_source_per_minute / 60.0, capacity)
            and self._total.take(now, limits.total_per_minute / 60.0, capacity)
        )
        if allowed:
            self.granted += 1
        else:
            self.dropped += 1
        return allowed

    def turn_away(self, source: str | None) -> bool:
        """True ⇒ ``source`` has spent its own reject rows for now: refuse its request
        without reading it. Counted in ``dropped``. A source never refused before is let
        through; a refused one only while its bucket holds a row's worth for every request
        of it already being read (:meth:`reading`): once a bucket refills one row's worth,
        one request is read, not every flood connection's next one."""
        bucket = self._sources.get(source or "-")
        if bucket is None:
            return False
        limits = self.limits
        bucket.refill(
            self.clock(), limits.per_source_per_minute / 60.0, float(max(limits.burst, 1))
        )
        if bucket.tokens - bucket.reading >= 1.0:
            return False
        self.dropped += 1
        return True

    @contextmanager
    def reading(self, source: str | None) -> Iterator[None]:
        """While a request that :meth:`turn_away` let through is read and judged: it holds
        one of its source's rows in reserve (a source never refused holds nothing)."""
        bucket = self._sources.get(source or "-")
        if bucket is None:
            yield
            return
        bucket.reading += 1
        try:
            yield
        finally:
            bucket.reading -= 1
