"""Write-behind (``db.write_behind``): a transaction's writes on a worker thread, in order,
with the first error raised and nothing after it applied — on the real Postgres, where
the projection uses it, and in-line (no thread) as on SQLite."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.write_behind import write_behind

pytestmark = pytest.mark.postgres


def _ledger(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ledger (n int PRIMARY KEY, x bigint NOT NULL)")
        conn.exec_driver_sql("INSERT INTO ledger VALUES (0, 1)")


def _step(k: int, threads: set[int]):  # type: ignore[no-untyped-def]
    def write(conn: sa.Connection) -> None:
        threads.add(threading.get_ident())
        # order-sensitive: x -> 3x + k, then a row per step
        conn.execute(sa.text("UPDATE ledger SET x = x * 3 + :k WHERE n = 0"), {"k": k})
        conn.execute(sa.text("INSERT INTO ledger VALUES (:n, :k)"), {"n": k + 1, "k": k})

    return write


@pytest.mark.parametrize("threaded", [True, False])
def test_writes_apply_in_submission_order_on_the_transaction(pg_url: str, threaded: bool) -> None:
    engine = make_engine(pg_url)
    try:
        _ledger(engine)
        threads: set[int] = set()
        with engine.begin() as conn, write_behind(conn, threaded) as writer:
            for k in range(20):
                writer.submit(_step(k, threads))
        expected = 1
        for k in range(20):
            expected = expected * 3 + k
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM ledger WHERE n = 0").scalar() == expected
            assert conn.exec_driver_sql("SELECT count(*) FROM ledger").scalar() == 21
        caller = threading.get_ident()
        assert (caller not in threads) if threaded else (threads == {caller})
    finally:
        engine.dispose()


def test_a_failed_write_is_raised_and_the_transaction_rolls_back(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        _ledger(engine)
        threads: set[int] = set()
        applied_after: list[int] = []

        def failing(conn: sa.Connection) -> None:
            conn.exec_driver_sql("INSERT INTO ledger VALUES (1, 0)")  # duplicate key

        def later(conn: sa.Connection) -> None:
            applied_after.append(1)

        with pytest.raises(sa.exc.IntegrityError, match="ledger_pkey"):
            with engine.begin() as conn, write_behind(conn) as writer:
                writer.submit(_step(0, threads))  # inserts n = 1
                writer.submit(failing)
                writer.submit(later)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM ledger WHERE n = 0").scalar() == 1
            assert conn.exec_driver_sql("SELECT count(*) FROM ledger").scalar() == 1
        # the write after the failure either never ran or ran in the aborted transaction
        # (nothing it did can have landed: the count above is the proof)
        assert len(applied_after) <= 1
    finally:
        engine.dispose()
