"""injective TradingView signal ids: ``%`` and ``:`` percent-encoded in each part

A TradingView signal's id was ``{symbol}:{trade_id}`` as sent, so symbol ``X`` with trade
``a:b`` and symbol ``X:a`` with trade ``b`` shared the id ``X:a:b`` (and one registry row
folded both). SPEC §16 now encodes ``%`` → ``%25`` and ``:`` → ``%3A`` in each part; ordinary
ids (no ``%`` or ``:`` in either part) are unchanged, so only events whose symbol or
trade_id holds one of the two characters are touched.

- ``signal_events``: each such event's ``signal_id`` becomes the encoded id of its own
  (symbol, trade_id) — webhook events and the sync's inferred expiries alike (both carry
  the pair; events of AlphaPulse signals, keyed by UUID, never match the old form).
- Tables keyed by the signal (``signals``, ``signal_gaps``, ``sync_audit_log``,
  ``signal_outcomes``, and any other table with a ``signal_id`` column but the UUID-keyed
  MTF tables): an old id whose
  events all map to one new id is renamed (in two steps, through a temporary id, so a
  new id that equals another row's old id never collides mid-way).
- An old id shared by two pairs (a collision): its registry row mixed both signals, so it
  and its gaps and outcomes are deleted (the outcomes asset computes them again when their
  day is next materialised), its audit rows go to the id of the row's own (symbol,
  trade_id), and the sync's event cursors (``lifecycle``, ``reconcile``, ``gaps``) are
  rewound to just before the first affected event, so the next sync folds each signal
  again from its own events (a re-fold is idempotent for every other signal it meets).

The rule is copied here, not imported: this revision must keep doing what it did when
it was written. Downgrade restores ``{symbol}:{trade_id}`` as sent where that is one id
per registry row (collisions are not re-created: their rows stay split).

Revision ID: 0006
Revises: 0010
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0010"  # 0009, 0007 and 0010 landed first; the chain stays linear
branch_labels = None
depends_on = None

# keyed by UUIDs of AlphaPulse signals: never hold a TradingView id
_UUID_TABLES = frozenset({"ai_signals_mtf", "mtf_entry_analysis_history"})
_EVENT_CURSORS = ("lifecycle", "reconcile", "gaps")

_events = sa.table(
    "signal_events",
    sa.column("event_id", sa.BigInteger),
    sa.column("signal_id", sa.String),
    sa.column("symbol", sa.String),
    sa.column("trade_id", sa.String),
)
_signals = sa.table(
    "signals", sa.column("signal_id", sa.String), sa.column("symbol"), sa.column("trade_id")
)
_cursors = sa.table("sync_cursors", sa.column("name", sa.String), sa.column("last_event_id"))


def _part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")


def encoded_id(symbol: str, trade_id: str) -> str:
    return f"{_part(symbol)}:{_part(trade_id)}"


def _sent_id(symbol: str, trade_id: str) -> str:
    return f"{symbol}:{trade_id}"


def _signal_tables(conn: sa.Connection) -> list[sa.TableClause]:
    """Every table but the log with a ``signal_id`` column that can hold a TradingView id."""
    inspector = sa.inspect(conn)
    found = []
    for name in sorted(inspector.get_table_names()):
        if name in _UUID_TABLES or name == "signal_events":
            continue
        if any(column["name"] == "signal_id" for column in inspector.get_columns(name)):
            found.append(sa.table(name, sa.column("signal_id", sa.String)))
    return found


def _affected_events(conn: sa.Connection) -> list[sa.Row]:
    """Events whose symbol or trade_id holds ``%`` or ``:`` (the only ids that change)."""
    special = sa.or_(
        *(
            column.contains(char, autoescape=True)
            for column in (_events.c.symbol, _events.c.trade_id)
            for char in ("%", ":")
        )
    )
    query = sa.select(
        _events.c.event_id, _events.c.signal_id, _events.c.symbol, _events.c.trade_id
    ).where(_events.c.trade_id.is_not(None), special)
    return list(conn.execute(query.order_by(_events.c.event_id)))


def _rename(conn: sa.Connection, renames: dict[str, str]) -> None:
    """Rename signal ids in every signal-keyed table, through temporary ids."""
    if not renames:
        return
    tables = _signal_tables(conn)
    temporary = {old: f"~0006~{n}" for n, old in enumerate(sorted(renames))}
    for step in (
        [(old, temporary[old]) for old in sorted(renames)],
        [(temporary[old], renames[old]) for old in sorted(renames)],
    ):
        for table in tables:
            statement = (
                table.update()
                .where(table.c.signal_id == sa.bindparam("b_from"))
                .values(signal_id=sa.bindparam("b_to"))
            )
            conn.execute(statement, [{"b_from": a, "b_to": b} for a, b in step])


def _rewrite_events(conn: sa.Connection, new_ids: dict[int, str]) -> None:
    if new_ids:
        statement = (
            _events.update()
            .where(_events.c.event_id == sa.bindparam("b_event_id"))
            .values(signal_id=sa.bindparam("b_signal_id"))
        )
        conn.execute(
            statement,
            [{"b_event_id": event_id, "b_signal_id": sid} for event_id, sid in new_ids.items()],
        )


def upgrade() -> None:
    conn = op.get_bind()
    new_ids: dict[int, str] = {}
    targets: dict[str, set[str]] = defaultdict(set)  # old id -> new ids of its events
    first_event: dict[str, int] = {}
    for event_id, signal_id, symbol, trade_id in _affected_events(conn):
        new = encoded_id(symbol, trade_id)
        if signal_id != _sent_id(symbol, trade_id) or new == signal_id:
            continue
        new_ids[event_id] = new
        targets[signal_id].add(new)
        first_event.setdefault(signal_id, event_id)
    _rewrite_events(conn, new_ids)

    renames = {old: next(iter(new)) for old, new in targets.items() if len(new) == 1}
    collided = sorted(old for old, new in targets.items() if len(new) > 1)
    # a collided id's audit trail follows the pair its registry row was named after
    for old in collided:
        row = conn.execute(
            sa.select(_signals.c.symbol, _signals.c.trade_id).where(_signals.c.signal_id == old)
        ).first()
        if row is not None and row.trade_id is not None:
            renames[old] = encoded_id(row.symbol, row.trade_id)
    if collided:
        for table in _signal_tables(conn):
            if table.name != "sync_audit_log":
                conn.execute(table.delete().where(table.c.signal_id.in_(collided)))
        floor = min(first_event[old] for old in collided) - 1
        conn.execute(
            _cursors.update()
            .where(_cursors.c.name.in_(_EVENT_CURSORS), _cursors.c.last_event_id > floor)
            .values(last_event_id=floor)
        )
    _rename(conn, renames)


def downgrade() -> None:
    conn = op.get_bind()
    new_ids: dict[int, str] = {}
    targets: dict[str, set[str]] = defaultdict(set)
    for event_id, signal_id, symbol, trade_id in _affected_events(conn):
        sent = _sent_id(symbol, trade_id)
        if signal_id != encoded_id(symbol, trade_id) or sent == signal_id:
            continue
        targets[sent].add(signal_id)
        new_ids[event_id] = sent
    merged = {sent for sent, ids in targets.items() if len(ids) > 1}
    _rewrite_events(
        conn,
        {
            event_id: sent
            for event_id, sent in new_ids.items()
            if sent not in merged
        },
    )
    _rename(
        conn, {next(iter(ids)): sent for sent, ids in targets.items() if sent not in merged}
    )
