"""Write-behind: a transaction's writes run on a background thread, in order, while the
caller reads and plans the next batch on another connection.

A sync cycle is a loop of "read a chunk, plan its changes in Python, write them". Run in
one thread, the database sits idle while Python plans and Python sits idle while the
database writes. With :class:`WriteBehind` the writes of chunk *k* execute (on the
transaction's connection, in a worker thread) while the caller reads and plans chunk
*k + 1* through a second, read-only connection — on a two-core machine the server's
write work and the client's planning overlap.

Safe only where chunk *k + 1*'s reads do not depend on chunk *k*'s uncommitted writes
(the chunks are disjoint sets of signals; the caller makes sure). The connection handed
over is used by the worker alone until :meth:`WriteBehind.drain` returns: the caller must
not touch it in between. A failed write is raised by the next :meth:`submit` or by
:meth:`drain`; nothing after it runs, and the caller's transaction is then rolled back by
whoever owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import Connection

Write = Callable[[Connection], None]


class WriteBehind:
    """Runs :data:`Write` callables on ``conn`` in a worker thread, one at a time, in
    submission order. ``threaded=False``: each write runs at once, on the caller's thread
    (SQLite, or when overlap is not wanted) — same results, no thread."""

    def __init__(self, conn: Connection, threaded: bool = True) -> None:
        self._conn = conn
        self._pool = ThreadPoolExecutor(1, "write-behind") if threaded else None
        self._pending: list[Future[None]] = []

    def submit(self, write: Write) -> None:
        """Queue ``write``; raise the error of an earlier write if one failed."""
        if self._pool is None:
            write(self._conn)
            return
        self._raise_failed()
        self._pending.append(self._pool.submit(write, self._conn))

    def drain(self) -> None:
        """Wait for every queued write; raise the first error. After it, the connection
        is the caller's again."""
        for future in self._pending:
            future.result()  # on an error, close() cancels the rest
        self._pending = []

    def _raise_failed(self) -> None:
        done = [f for f in self._pending if f.done()]
        for future in done:
            future.result()  # raises the write's error
        self._pending = [f for f in self._pending if not f.done()]

    def close(self) -> None:
        """Stop taking writes; wait for those running (without raising: the caller is
        already handling an error, or has drained)."""
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pending = []


@contextmanager
def write_behind(conn: Connection, threaded: bool = True) -> Iterator[WriteBehind]:
    """A :class:`WriteBehind` on ``conn`` for the block. On a normal exit the writes are
    drained (their errors raised); on an error the queued writes are cancelled and the
    running one awaited, so the connection is idle when the error reaches the
    transaction's owner."""
    writer = WriteBehind(conn, threaded)
    try:
        yield writer
        writer.drain()
    finally:
        writer.close()
