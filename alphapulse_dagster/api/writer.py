"""Group commit for webhook events: many concurrent requests, one transaction, then each
request gets its answer — within a bounded time, whatever the database does.

Requests put their validated event on an asyncio queue and wait. One writer task takes
everything queued (up to ``max_batch``) and appends it in a single transaction on the
database thread (sync SQLAlchemy engine, :func:`bounded_write`: lock and statement
timeouts); only after the COMMIT does it resolve each request's future, so every 200 is
durable, and while one batch commits the next one gathers.

Outages (SPEC §14). A batch goes to the :class:`Spool` (fsynced; each request gets
"spooled" → 503) when the database refuses the connection, when a lock or statement
timeout fires, or when the commit has not returned within ``write_timeout`` seconds (a
hung server: the thread stays blocked on it, and until it returns every batch is spooled
without waiting for it — if that commit lands after all, the replay finds the events by
their idempotency key and stores nothing twice).

Ordering: while the spool holds events (``Spool.pending``), new batches are appended to
the spool too, behind them, so spool order is arrival order and the log receives events in
the order they arrived. The replay runs on its own thread, off the request path: every
``replay_interval`` seconds while anything is pending it checks the connection first
(``SELECT 1``), then replays step by step (:meth:`Spool.replay_step`, one chunk per
transaction, incremental) until the spool is empty. At startup it begins at once, in the
background: the server answers ``/healthz`` before the replay ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import WriteTimeouts, bounded_write
from alphapulse_dagster.sync.events import Appended, NewEvent, append_events
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Done-callback of a commit that outlived its deadline: nobody awaits it any more."""
    if not future.cancelled() and future.exception() is not None:
        log.info("a timed-out webhook commit ended with %s", type(future.exception()).__name__)


class EventWriter:
    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        *,
        max_batch: int = 500,
        write_timeout: float = 1.0,
        timeouts: WriteTimeouts | None = None,
        replay_interval: float = 0.5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.spool = spool
        self.max_batch = max_batch
        self.write_timeout = write_timeout
        self.timeouts = timeouts or WriteTimeouts()
        self.replay_interval = replay_interval
        self.clock = clock
        self.batches = 0
        self.events = 0
        self.replayed = 0
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-writer")
        self._spooler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-writer")
        self._replayer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-replay")
        self._task: asyncio.Task[None] | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._wake_replay: asyncio.Event | None = None
        self._in_flight: asyncio.Future[list[WriteOutcome]] | None = None
        self._storage_down = False
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer and the background replay; returns at once (the replay of a
        spool left by the last run proceeds while the server already answers)."""
        self._queue = asyncio.Queue()
        self._wake_replay = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="event-writer")
        self._replay_task = asyncio.create_task(self._replay_loop(), name="spool-replay")

    async def stop(self) -> None:
        self._stopping = True  # a replay under way stops after its current step
        if self._replay_task is not None:
            self._replay_task.cancel()
        if self._queue is not None and self._task is not None:
            await self._queue.put(None)
            await self._task
        stuck = self._in_flight is not None and not self._in_flight.done()
        self._database.shutdown(wait=not stuck)
        self._spooler.shutdown(wait=True)
        self._replayer.shutdown(wait=False)

    @property
    def storage_down(self) -> bool:
        return self._storage_down

    # --- API for the routes ---------------------------------------------------------------

    async def submit(self, event: NewEvent) -> WriteOutcome:
        """Append ``event`` with the next group commit; returns after the COMMIT, or after
        the spool's fsync — at most about ``write_timeout`` seconds after it is taken."""
        assert self._queue is not None, "EventWriter.start() not awaited"
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, future))
        return await future

    async def replay_spool(self) -> None:
        """Run one replay pass now (tests and operators; the loop does it by itself)."""
        await asyncio.get_running_loop().run_in_executor(self._replayer, self._replay_pass)

    # --- the writer task ------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
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
                outcomes = await self._write(events)
            except Exception as exc:  # never leave a request hanging
                log.exception("event writer failed")
                outcomes = [WriteOutcome(error=type(exc).__name__)] * len(events)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    async def _write(self, events: list[NewEvent]) -> list[WriteOutcome]:
        if self.spool.pending():
            return await self._spool(events)  # behind the backlog: arrival order
        if self._in_flight is not None and not self._in_flight.done():
            return await self._spool(events)  # the last commit is still hanging
        loop = asyncio.get_running_loop()
        commit = loop.run_in_executor(self._database, self._commit, events)
        self._in_flight = commit
        try:
            return await asyncio.wait_for(asyncio.shield(commit), self.write_timeout)
        except TimeoutError:
            commit.add_done_callback(_retrieve)
            self._mark_down(f"no commit within {self.write_timeout:g} s")
        except STORAGE_UNAVAILABLE as exc:
            self._mark_down(type(exc).__name__)
        return await self._spool(events)

    async def _spool(self, events: list[NewEvent]) -> list[WriteOutcome]:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._spooler, self.spool.append, events)
        except OSError as exc:
            log.error("spool %s not writable: %s", self.spool.path, exc)
            return [WriteOutcome(error="spool unavailable")] * len(events)
        assert self._wake_replay is not None
        self._wake_replay.set()
        return [WriteOutcome(spooled=True)] * len(events)

    # --- on the database thread -----------------------------------------------------------

    def _commit(self, events: list[NewEvent]) -> list[WriteOutcome]:
        try:
            with bounded_write(self.engine, self.timeouts) as connection:
                appended = append_events(connection, events, self.clock())
        except STORAGE_UNAVAILABLE:
            raise
        except sa_exc.SQLAlchemyError as exc:
            if len(events) == 1:
                log.error("database refused webhook event: %s", type(exc).__name__)
                return [WriteOutcome(error=type(exc).__name__, refused=True)]
            # isolate the one event the database refuses; the others still commit
            return [outcome for event in events for outcome in self._commit([event])]
        if self._storage_down:
            log.info("database available again")
            self._storage_down = False
        self.batches += 1
        self.events += len(events)
        return [WriteOutcome(appended=item) for item in appended]

    def _mark_down(self, why: str) -> None:
        if not self._storage_down:
            log.warning("database unavailable (%s); spooling webhook events", why)
        self._storage_down = True

    # --- the replay, on its own thread ----------------------------------------------------

    async def _replay_loop(self) -> None:
        assert self._wake_replay is not None
        loop = asyncio.get_running_loop()
        while True:
            if self.spool.pending():
                try:
                    await loop.run_in_executor(self._replayer, self._replay_pass)
                except Exception:  # logged, retried next tick
                    log.exception("spool replay failed")
            self._wake_replay.clear()
            if self._storage_down:  # back off: one connection check per interval
                await asyncio.sleep(self.replay_interval)
                continue
            try:
                await asyncio.wait_for(self._wake_replay.wait(), self.replay_interval)
            except TimeoutError:
                pass

    def _replay_pass(self) -> None:
        """Check the connection, then replay until the spool is empty; stop at the first
        sign of an outage (the next pass retries)."""
        if not self.spool.pending():
            return
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            while True:
                step = self.spool.replay_step(
                    self.engine, self.clock(), begin=self._bounded_transaction
                )
                self.replayed += len(step.appended)
                if step.drained:
                    if self.replayed:
                        log.info("spool replayed (%d events so far)", self.replayed)
                    self._storage_down = False
                    return
                if not step.appended and not step.dead:
                    return  # another process is replaying this spool
                if self._stopping:
                    return
        except STORAGE_UNAVAILABLE as exc:
            self._mark_down(type(exc).__name__)

    def _bounded_transaction(self) -> Any:
        return bounded_write(self.engine, self.timeouts)
