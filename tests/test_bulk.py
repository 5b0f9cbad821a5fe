"""``db.bulk``'s batch statements on both back ends: rows writing different column sets
(and JSON merges next to whole documents) in one ``update_rows`` call — every row ends up
with exactly the columns it wrote changed, every other column untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.bulk import (
    COPY_MIN,
    in_ids,
    insert_rows,
    json_merge,
    pipelined,
    update_rows,
)
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.types import JsonDoc, UtcDateTime

meta = sa.MetaData()
things = sa.Table(
    "bulk_things",
    meta,
    sa.Column("thing_id", sa.String(32), primary_key=True),
    sa.Column("price", sa.Float),
    sa.Column("label", sa.String(16)),
    sa.Column("doc", JsonDoc),
    sa.Column("at", UtcDateTime),
)
T = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ZERO = timedelta(0)


def _rows(engine: sa.Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {
            r["thing_id"]: dict(r)
            for r in conn.execute(sa.select(things).order_by(things.c.thing_id)).mappings()
        }


def test_update_rows_with_different_column_sets_in_one_call(engine: sa.Engine) -> None:
    meta.create_all(engine)
    start = {"price": 1.5, "label": "x", "doc": {"a": 1, "b": 2}, "at": T}
    with engine.begin() as conn:
        insert_rows(conn, things, [{"thing_id": f"t{n}", **start} for n in range(8)])
    old_doc = {"a": 1, "b": 2}
    updates = [
        {"thing_id": "t0", "price": 2.5},  # one column
        {"thing_id": "t1", "label": None, "at": T.replace(year=2026)},  # a NULL and a time
        {"thing_id": "t2", "doc": json_merge(old_doc, {"a": 1, "b": 3, "c": [1.0, 2.0]})},  # merge
        {"thing_id": "t3", "doc": {"z": None}, "price": None},  # whole document (a key removed)
        # a naive time (taken as UTC) and one at another offset, same instant
        {"thing_id": "t4", "at": datetime(2027, 5, 6, 7, 8, 9, 123456)},
        {
            "thing_id": "t5",
            "at": datetime(2027, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))),
        },
        {"thing_id": "t6", "price": float("inf")},
        # t7 not written
    ]
    with engine.begin() as conn:
        update_rows(conn, things, updates)
    got = _rows(engine)
    assert got["t0"] == {"thing_id": "t0", **start, "price": 2.5}
    assert got["t1"] == {"thing_id": "t1", **start, "label": None, "at": T.replace(year=2026)}
    assert got["t2"] == {"thing_id": "t2", **start, "doc": {"a": 1, "b": 3, "c": [1.0, 2.0]}}
    assert got["t3"] == {"thing_id": "t3", **start, "doc": {"z": None}, "price": None}
    at = datetime(2027, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert got["t4"] == {"thing_id": "t4", **start, "at": at}
    assert got["t5"]["at"] == at.replace(microsecond=0) and got["t5"]["at"].utcoffset() == ZERO
    assert got["t6"]["price"] == float("inf")
    assert got["t7"] == {"thing_id": "t7", **start}


def test_update_rows_with_one_column_set(engine: sa.Engine) -> None:
    meta.create_all(engine)
    with engine.begin() as conn:
        insert_rows(conn, things, [{"thing_id": "a", "price": 1.0, "label": "l"}])
        insert_rows(conn, things, [{"thing_id": "b", "price": 2.0, "label": "m"}])
        update_rows(
            conn, things, [{"thing_id": "a", "price": 3.0}, {"thing_id": "b", "price": 4.0}]
        )
    got = _rows(engine)
    assert (got["a"]["price"], got["a"]["label"], got["b"]["price"]) == (3.0, "l", 4.0)


def test_insert_rows_stores_the_same_values_by_copy_and_by_statement(engine: sa.Engine) -> None:
    """From ``COPY_MIN`` rows Postgres inserts by COPY; fewer go as one INSERT. Both store
    the same values — a JSON None as JSON 'null' (not SQL NULL), times as UTC."""
    meta.create_all(engine)
    naive = datetime(2025, 1, 2, 3, 4, 5)  # taken as UTC

    def rows(prefix: str, n: int) -> list[dict]:
        return [
            {
                "thing_id": f"{prefix}{i:03d}",
                "price": [1.25, None, float("inf")][i % 3],
                # COPY's text format escapes these; JSON strings keep their own escapes
                "label": None if i % 2 else ["a\tb", "c\nd\r", "e\\f", "ü€", f"l{i}"][i % 5],
                "doc": [None, {"a": [1.0, "x"], "s": 'q"\\n\n\t'}, [2.5]][i % 3],
                "at": naive if i % 2 else T,
            }
            for i in range(n)
        ]

    with engine.begin() as conn:
        insert_rows(conn, things, rows("c", COPY_MIN + 6))  # one batch: COPY on Postgres
        for row in rows("s", COPY_MIN + 6):
            insert_rows(conn, things, [row])  # one row at a time: INSERT
    got = _rows(engine)
    by_copy = {k[1:]: {**v, "thing_id": None} for k, v in got.items() if k.startswith("c")}
    by_statement = {k[1:]: {**v, "thing_id": None} for k, v in got.items() if k.startswith("s")}
    assert by_copy == by_statement and len(by_copy) == COPY_MIN + 6
    assert by_copy["001"]["at"] == T.replace(hour=3, minute=4, second=5, day=2)
    assert by_copy["002"]["price"] == float("inf") and by_copy["000"]["doc"] is None
    assert by_copy["002"]["label"] == "e\\f" and by_copy["000"]["label"] == "a\tb"
    assert by_copy["001"]["doc"] == {"a": [1.0, "x"], "s": 'q"\\n\n\t'}
    with engine.connect() as conn:
        sql_nulls = conn.execute(
            sa.select(sa.func.count()).select_from(things).where(things.c.doc.is_(None))
        ).scalar()
    assert sql_nulls == 0  # every JSON None is stored as JSON 'null', by either path


def test_in_ids_selects_exactly_the_given_ids_whatever_their_text(engine: sa.Engine) -> None:
    """On Postgres the ids travel as one array literal: quotes, backslashes, commas,
    braces, the word NULL, empty and non-ASCII text must all round-trip."""
    meta.create_all(engine)
    nasty = ['a"b', "c\\d", "e,f", "{g}", "NULL", "", "h i", 'j\\"k', "ü:€", "BTC:1_LONG"]
    with engine.begin() as conn:
        conn.execute(sa.insert(things), [{"thing_id": i} for i in [*nasty, "other", "x"]])
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(things.c.thing_id).where(in_ids(conn, things.c.thing_id, nasty))
        ).scalars()
        assert sorted(found) == sorted(nasty)
        none = conn.execute(sa.select(things.c.thing_id).where(in_ids(conn, things.c.thing_id, [])))
        assert none.all() == []


@pytest.mark.postgres
def test_batch_writes_in_pipeline_mode_store_what_they_store_outside_it(pg_url: str) -> None:
    engine = make_engine(pg_url)
    meta.create_all(engine)
    rows = [
        {"thing_id": f"t{n}", "price": n / 4, "label": "x", "doc": {"n": n}, "at": T}
        for n in range(COPY_MIN + 5)
    ]
    with engine.begin() as conn, pipelined(conn):
        # COPY cannot run in pipeline mode: the rows go as one recordset INSERT
        insert_rows(conn, things, rows)
        update_rows(
            conn, things, [{"thing_id": "t1", "price": None}, {"thing_id": "t2", "doc": None}]
        )
    expected = {r["thing_id"]: dict(r) for r in rows}
    expected["t1"]["price"] = None
    expected["t2"]["doc"] = None
    assert _rows(engine) == expected
    engine.dispose()
