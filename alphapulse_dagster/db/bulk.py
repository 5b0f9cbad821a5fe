"""Batch statements that stay cheap with thousands of rows, on either dialect.

On Postgres a batch travels as *one* bound parameter — the rows as a JSON array unpacked by
``jsonb_to_recordset``, an id list as an array for ``= ANY`` — so the statement text is the
same for every batch: compiled and parsed once (and cached), instead of being re-rendered
with thousands of placeholders, and one statement does the whole batch instead of one per
row. Elsewhere (SQLite) the same calls are an ``IN`` list and an executemany.

Values are bound, never formatted into SQL; column names come from the table definition.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import sql
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Table,
    any_,
    bindparam,
    cast,
    insert,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from alphapulse_dagster.clock import as_utc
from alphapulse_dagster.db.types import UtcDateTime

# rows per statement: bounds one parameter's size (and the server's memory for it)
BATCH = 5000
# from this many rows, an INSERT on Postgres travels as COPY
COPY_MIN = 64
# the bind name of the primary key in :func:`update_rows` (never a column's name)
_KEY = "b_id"


@dataclass(frozen=True)
class JsonMerge:
    """A new value for a JSON-object column given as the top-level keys that changed:
    Postgres writes ``column || changed`` (a small parameter instead of the whole
    document); elsewhere the whole ``document`` is written. Build it with
    :func:`json_merge`, which only uses it when no key was removed."""

    changed: Mapping[str, Any]
    document: Mapping[str, Any]


_ABSENT = object()


def json_merge(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Any:
    """``new`` as a :class:`JsonMerge` over ``old`` when it keeps all of ``old``'s keys,
    else ``new`` itself (the result is ``new`` either way)."""
    if not isinstance(old, Mapping) or not old.keys() <= new.keys():
        return new
    changed = {}
    for key, value in new.items():
        held = old.get(key, _ABSENT)
        # (an entry the fold or the tiers left alone is the same object: no deep compare)
        if held is not value and held != value:
            changed[key] = value
    return JsonMerge(changed, new)


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def in_ids(conn: Connection, column: ColumnElement[Any], ids: Collection[Any]) -> Any:
    """``column IN ids`` — on Postgres ``column = ANY(:array)``, one parameter: the array
    as its text literal (:func:`array_literal`), parsed by the server.

    The parameter is bound untyped so that the server reads it *as* the array (a
    constant when the statement is planned: hashed when ``ANY`` is a filter). Bound as
    text and cast, it would be re-parsed for every row the filter sees — 300 ms over
    1,000 log rows against 1,000 ids."""
    if is_postgres(conn):
        array = bindparam(None, array_literal(ids), type_=NullType())
        return column == any_(cast(array, ARRAY(column.type)))
    return column.in_(list(ids))


def array_literal(values: Collection[Any]) -> str:
    """A Postgres array literal of ``values``, each element double-quoted (backslash and
    double quote escaped), so any text round-trips: ``{"a","b \\"c\\""}``. Built with one
    join — psycopg adapts a Python list element by element, ~2 ms per 1,000 ids."""
    quoted = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{q}"' for q in quoted) + "}"


def _json_ready(value: Any) -> Any:
    """A recordset value as orjson should see it: a merge as its changed keys, a
    non-finite float as the text Postgres reads. The rest orjson encodes itself —
    datetimes as RFC 3339, naive ones as UTC (``_orjson_dumps``)."""
    if value.__class__ is JsonMerge:
        return value.changed
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    return value


def _json_default(value: Any) -> Any:
    """What orjson does not encode itself: numpy scalars (``.item()``)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _groups(rows: Sequence[Mapping[str, Any]], skip: str = "") -> dict[tuple[str, ...], list]:  # type: ignore[type-arg]
    """The rows by their sorted column names (but ``skip``). Rows are first bucketed by
    their keys as they come (``tuple(row)``, no sorting per row: a batch's rows are built
    alike), then each bucket's names are sorted once."""
    by_keys: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_keys[tuple(row)].append(row)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for keys, batch in by_keys.items():
        groups[tuple(sorted(c for c in keys if c != skip))].extend(batch)
    return groups


def _whole(row: Mapping[str, Any]) -> dict[str, Any]:
    return {c: v.document if isinstance(v, JsonMerge) else v for c, v in row.items()}


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT`` the rows (dicts; those with the same keys go together)."""
    if not rows:
        return
    if not is_postgres(conn):
        for batch in _groups(rows).values():  # an executemany needs one key set
            conn.execute(insert(table), batch)
        return
    raw = driver_connection(conn)
    for columns, batch in _groups(rows).items():
        # COPY cannot run in pipeline mode (:func:`pipelined`): a recordset there
        if len(batch) >= COPY_MIN and not in_pipeline(conn):
            _copy_rows(conn, table, columns, batch)
            continue
        query = _insert_sql(conn, table, columns)
        for start in range(0, len(batch), BATCH):
            raw.execute(query, [_recordset_json(columns, batch[start : start + BATCH])])


def _orjson_dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NAIVE_UTC)


def _copy_time(value: Any) -> Any:
    return as_utc(value) if value.__class__ is datetime else value


def _copy_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """``COPY … FROM STDIN`` on the connection's own transaction: ~2x a recordset
    ``INSERT`` for thousands of rows. psycopg formats each row; a JSON value goes as its
    text, encoded here with orjson (a Python None as JSON 'null', as SQLAlchemy stores
    it) — ~40% less Python than psycopg's per-value JSON adaptation. Triggers fire as
    for an ``INSERT``."""
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    statement = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"
    encode: dict[str, Callable[[Any], Any]] = {}
    for c in columns:
        kind = table.c[c].type
        if isinstance(kind, JSON):
            encode[c] = _copy_json
        elif isinstance(kind, DateTime | UtcDateTime):
            encode[c] = _copy_time
    steps = [(c, encode.get(c)) for c in columns]
    with driver_connection(conn).cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] if f is None else f(row[c]) for c, f in steps])


def _copy_json(value: Any) -> str:
    return _orjson_dumps(value).decode()


def update_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``UPDATE table`` by primary key (each row carries it under its column name),
    writing only the columns each row carries: one statement per distinct column set."""
    if not rows:
        return
    primary = table.primary_key.columns[0]
    # the key travels under a name of its own: SQLAlchemy reserves the column's name for
    # the SET clause
    key = _KEY
    rows = [{key if c == primary.name else c: v for c, v in row.items()} for row in rows]
    if not is_postgres(conn):
        for columns, batch in _groups([_whole(r) for r in rows], key).items():
            conn.execute(
                update(table)
                .where(primary == bindparam(key))
                .values({c: bindparam(c) for c in columns}),
                batch,
            )
        return
    # a column written as a merge and the same column written whole go apart
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        marked = (f"{c}+" if v.__class__ is JsonMerge else c for c, v in row.items() if c != key)
        groups[tuple(sorted(marked))].append(row)
    raw = driver_connection(conn)
    for names, batch in groups.items():
        columns = tuple(n.rstrip("+") for n in names)
        merged = frozenset(n.rstrip("+") for n in names if n.endswith("+"))
        query = _update_sql(conn, table, columns, merged, key)
        for start in range(0, len(batch), BATCH):
            raw.execute(query, [_recordset_json((key, *columns), batch[start : start + BATCH])])


# --- Postgres statements -------------------------------------------------------------------
#
# The batch statements run on psycopg's own connection (the SQLAlchemy connection's
# transaction), with their text built once per table and column set: a ``SELECT`` over
# ``jsonb_to_recordset`` of the one JSON parameter. Sent this way they also work in
# pipeline mode (:func:`pipelined`), where a statement goes to the server at once and the
# caller does not wait for it.

_STATEMENTS: dict[tuple[Any, ...], sql.Composed] = {}


def driver_connection(conn: Connection) -> Any:
    """The psycopg connection under ``conn`` (its transaction is ``conn``'s)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw


def in_pipeline(conn: Connection) -> bool:
    """Whether ``conn``'s psycopg connection is in pipeline mode."""
    return bool(driver_connection(conn).pgconn.pipeline_status)


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Run the block's batch writes on ``conn`` (Postgres) in psycopg's pipeline mode: each
    statement is sent at once and the caller goes on — planning the next chunk — while
    the server executes it. Leaving the block waits for every statement and raises the
    first error (the transaction is then aborted: the caller's rollback undoes it all).

    Only :func:`insert_rows` and :func:`update_rows` may run on ``conn`` inside the block:
    a statement whose result is read (a SELECT, or SQLAlchemy's ``execute``) would wait
    for the whole queue. Elsewhere (SQLite) the block runs as is."""
    if not is_postgres(conn):
        yield
        return
    with driver_connection(conn).pipeline():
        yield


def _recordset_json(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one JSON array (orjson: ~10x the stdlib encoder on these documents).
    A row whose keys are exactly ``columns`` (every batch's rows: grouped by their keys)
    goes as it is unless a value needs :func:`_json_ready`: no copy per row."""
    names = frozenset(columns)
    ready = [
        row
        if type(row) is dict and row.keys() == names and _ready_as_is(row)
        else _ready_row(columns, row)
        for row in rows
    ]
    return _orjson_dumps(ready).decode()


def _ready_as_is(row: Mapping[str, Any]) -> bool:
    """Whether orjson may encode ``row`` as it is: plain ``str`` names (orjson refuses a
    subclass, e.g. SQLAlchemy's ``quoted_name``), no merge, no non-finite float."""
    for name, value in row.items():
        if name.__class__ is not str or value.__class__ is JsonMerge:
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
    return True


def _ready_row(columns: Sequence[str], row: Mapping[str, Any]) -> dict[str, Any]:
    return {c: _json_ready(row[c]) for c in columns}


def _given(conn: Connection, table: Table, columns: Sequence[str], key: str | None) -> sql.Composed:
    """``jsonb_to_recordset(%s::jsonb) AS given(<column> <type>, …)`` — the key (not a
    column of the table) takes the primary key's type. Names and types come from the
    table definition."""
    primary = table.primary_key.columns[0]
    fields = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(c),
            sql.SQL((primary if c == key else table.c[c]).type.compile(dialect=conn.dialect)),
        )
        for c in columns
    )
    return sql.SQL("jsonb_to_recordset(%s::jsonb) AS given({})").format(fields)


def _given_value(table: Table, name: str) -> sql.Composed:
    column = sql.SQL("given.{}").format(sql.Identifier(name))
    # a Python None in a JSON column is stored as JSON 'null' (as SQLAlchemy stores it);
    # jsonb_to_recordset yields SQL NULL for it
    if isinstance(table.c[name].type, JSON):
        return sql.SQL("coalesce({}, 'null'::jsonb)").format(column)
    return column


def _table(table: Table) -> sql.Identifier:
    return (
        sql.Identifier(table.name)
        if table.schema is None
        else sql.Identifier(table.schema, table.name)
    )


def _insert_sql(conn: Connection, table: Table, columns: tuple[str, ...]) -> sql.Composed:
    cache_key = ("insert", table, columns)
    if cache_key not in _STATEMENTS:
        _STATEMENTS[cache_key] = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            _table(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(_given_value(table, c) for c in columns),
            _given(conn, table, columns, None),
        )
    return _STATEMENTS[cache_key]


def _update_sql(
    conn: Connection, table: Table, columns: tuple[str, ...], merged: frozenset[str], key: str
) -> sql.Composed:
    """``UPDATE`` by primary key from the recordset; a ``merged`` JSON column is written as
    ``column || given`` (:class:`JsonMerge`)."""
    cache_key = ("update", table, columns, merged, key)
    if cache_key not in _STATEMENTS:
        name = _table(table)
        sets = [
            sql.SQL("{} = {}").format(
                sql.Identifier(c),
                sql.SQL("{}.{} || given.{}").format(name, sql.Identifier(c), sql.Identifier(c))
                if c in merged
                else _given_value(table, c),
            )
            for c in columns
        ]
        _STATEMENTS[cache_key] = sql.SQL("UPDATE {} SET {} FROM {} WHERE {}.{} = given.{}").format(
            name,
            sql.SQL(", ").join(sets),
            _given(conn, table, (key, *columns), key),
            name,
            sql.Identifier(table.primary_key.columns[0].name),
            sql.Identifier(key),
        )
    return _STATEMENTS[cache_key]
