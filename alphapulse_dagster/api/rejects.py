"""``webhook_rejects`` rows, written in batches off the valid events' path.

A refused webhook is answered at once; its row (if :class:`RejectBudget` grants one) is
queued in memory and a background task writes the queue every ``flush_interval`` seconds
in one transaction on its own thread and connection — never on the group-commit thread,
so a flood of refusals does not delay the commits of valid events. A row that cannot be
written (database down) is logged and counted in ``failed``; rows still queued at shutdown
are written then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy import exc as sa_exc

from alphapulse_dagster.db.engine import WriteTimeouts, bounded_write
from alphapulse_dagster.db.tables import webhook_rejects
from alphapulse_dagster.webhooks.reject_budget import RejectBudget
from alphapulse_dagster.webhooks.spool import STORAGE_UNAVAILABLE

log = logging.getLogger(__name__)


class RejectRecorder:
    def __init__(
        self,
        engine: Engine,
        budget: RejectBudget,
        *,
        flush_interval: float = 0.25,
        timeouts: WriteTimeouts | None = None,
    ) -> None:
        self.engine = engine
        self.budget = budget
        self.flush_interval = flush_interval
        self.timeouts = timeouts or WriteTimeouts()
        self.written = 0
        self.failed = 0
        self._rows: list[dict[str, Any]] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reject-writer")
        self._task: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> int:
        return self.budget.dropped

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="reject-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()
        self._thread.shutdown(wait=True)

    def offer(self, source: str | None, row: Callable[[], dict[str, Any]]) -> bool:
        """Queue the row built by ``row()`` when the budget grants it (the row is built
        only then: redaction costs CPU a flood should not get)."""
        if not self.budget.allow(source):
            return False
        self._rows.append(row())
        return True

    async def flush(self) -> None:
        rows, self._rows = self._rows, []
        if rows:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._write, rows)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:  # in the background: a database that is down must not delay the startup
            self.budget.stored = await loop.run_in_executor(self._thread, self._count)
        except sa_exc.SQLAlchemyError as exc:
            log.warning("could not count webhook_rejects (%s)", type(exc).__name__)
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:  # logged; the loop keeps going
                log.exception("writing webhook rejects failed")

    def _count(self) -> int:
        with self.engine.connect() as connection:
            count = select(func.count()).select_from(webhook_rejects)
            return int(connection.execute(count).scalar_one())

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with bounded_write(self.engine, self.timeouts) as connection:
                connection.execute(insert(webhook_rejects), rows)
        except STORAGE_UNAVAILABLE as exc:
            self.failed += len(rows)
            log.warning("could not record %d webhook rejects: %s", len(rows), type(exc).__name__)
            return
        except sa_exc.SQLAlchemyError:
            if len(rows) > 1:  # one row the database refuses must not cost the others
                for row in rows:
                    self._write([row])
                return
            self.failed += 1
            log.warning("database refused a webhook reject row")
            return
        self.written += len(rows)
