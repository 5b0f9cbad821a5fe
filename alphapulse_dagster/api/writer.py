"""Group commit for webhook events: many concurrent requests, one transaction, then each
request gets its answer.

Requests put their validated event on an asyncio queue and wait. One writer task takes
everything queued (up to ``max_batch``), appends it in a single transaction on a dedicated
thread (sync SQLAlchemy engine), and only after the COMMIT resolves each request's future —
so every 200 is durable, and while one batch commits the next one gathers. With one
commit per batch instead of per request, throughput is bounded by Python, not by fsync.

When the database is unavailable the batch goes to the :class:`Spool` (fsynced) and each
request gets "spooled" (→ 503). While the spool holds events, new batches are appended
*after* it is replayed, so the log keeps arrival order; a replay is attempted at most every
``replay_interval`` seconds while the database stays down, and also by a background loop
when no requests arrive. Reject rows go through the same thread, so SQLite sees one writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.sync.events import Appended, NewEvent, append_events
from alphapulse_dagster.webhooks.ingest import record_reject
from alphapulse_dagster.webhooks.spool import STORAGE_UNAVAILABLE, Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOutcome:
    """``appended`` when committed; ``spooled`` when parked for replay; else ``error``, with
    ``refused`` when the database refused this one event (retrying will not help: a 422)
    rather than storage and spool both being unavailable (a 503)."""

    appended: Appended | None = None
    spooled: bool = False
    error: str | None = None
    refused: bool = False


_Item = tuple[NewEvent, "asyncio.Future[WriteOutcome]"]


class EventWriter:
    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        *,
        max_batch: int = 500,
        replay_interval: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.spool = spool
        self.max_batch = max_batch
        self.replay_interval = replay_interval
        self.clock = clock
        self.batches = 0
        self.events = 0
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-writer")
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._last_replay_attempt = float("-inf")
        self._storage_down = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="event-writer")
        self._replayer = asyncio.create_task(self._replay_loop(), name="spool-replayer")
        await self.replay_spool()

    async def stop(self) -> None:
        if self._replayer is not None:
            self._replayer.cancel()
        if self._queue is not None and self._task is not None:
            await self._queue.put(None)
            await self._task
        self._executor.shutdown(wait=True)

    @property
    def storage_down(self) -> bool:
        return self._storage_down

    # --- API for the routes ---------------------------------------------------------------

    async def submit(self, event: NewEvent) -> WriteOutcome:
        """Append ``event`` with the next group commit; returns after the COMMIT (or after
        the spool's fsync)."""
        assert self._queue is not None, "EventWriter.start() not awaited"
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, future))
        return await future

    async def record_reject(self, row: dict[str, Any]) -> None:
        """Write a ``webhook_rejects`` row on the writer thread; a database outage is logged,
        never raised (the caller still gets its 4xx)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write_reject, row)

    async def replay_spool(self) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._replay, True)

    # --- the writer task and thread -------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            events = [event for event, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._write, events)
            except Exception as exc:  # never leave a request hanging
                log.exception("event writer failed")
                outcomes = [WriteOutcome(error=type(exc).__name__)] * len(events)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.replay_interval, 0.2) * 2)
            if self.spool.pending():
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self._executor, self._replay, False
                    )
                except Exception:  # pragma: no cover - logged, retried next tick
                    log.exception("spool replay failed")

    def _replay(self, force: bool) -> int:
        """Replay the spool if it has events; rate-limited while the database is down.
        Returns the number replayed, or -1 when the database is still unavailable."""
        if not self.spool.pending():
            return 0
        now_mono = time.monotonic()
        if not force and now_mono - self._last_replay_attempt < self.replay_interval:
            return -1
        self._last_replay_attempt = now_mono
        try:
            replayed = self.spool.replay(self.engine, self.clock())
        except STORAGE_UNAVAILABLE as exc:
            self._mark_down(exc)
            return -1
        self._storage_down = False
        return replayed

    def _mark_down(self, exc: BaseException) -> None:
        if not self._storage_down:
            log.warning("database unavailable (%s); spooling webhook events", type(exc).__name__)
        self._storage_down = True

    def _write(self, events: list[NewEvent]) -> list[WriteOutcome]:
        if self.spool.pending() and self._replay(force=False) < 0:
            return self._spool(events)
        try:
            with self.engine.begin() as connection:
                appended = append_events(connection, events, self.clock())
        except STORAGE_UNAVAILABLE as exc:
            self._mark_down(exc)
            return self._spool(events)
        except sa_exc.SQLAlchemyError as exc:
            if len(events) == 1:
                log.error("database refused webhook event: %s", type(exc).__name__)
                return [WriteOutcome(error=type(exc).__name__, refused=True)]
            # isolate the one event the database refuses; the others still commit
            return [outcome for event in events for outcome in self._write([event])]
        if self._storage_down:
            log.info("database available again")
            self._storage_down = False
        self.batches += 1
        self.events += len(events)
        return [WriteOutcome(appended=item) for item in appended]

    def _spool(self, events: list[NewEvent]) -> list[WriteOutcome]:
        try:
            self.spool.append(events)
        except OSError as exc:
            log.error("spool %s not writable: %s", self.spool.path, exc)
            return [WriteOutcome(error="spool unavailable")] * len(events)
        return [WriteOutcome(spooled=True)] * len(events)

    def _write_reject(self, row: dict[str, Any]) -> None:
        try:
            with self.engine.begin() as connection:
                record_reject(connection, row)
        except sa_exc.SQLAlchemyError as exc:
            log.warning(
                "could not record webhook reject (%s %s): %s",
                row.get("status_code"),
                row.get("reason"),
                type(exc).__name__,
            )
