"""When a trade is final: Tier 1 has nothing left to measure on it.

A trade is **final** when it is closed and its excursions were measured from candles
(Tier 1) at or after its close: later candles cannot change them. Every other confirmed
trade may still be (re)measured, so each sync offers it to Tier 1.

The rule is stated once, as data: :data:`FINAL_TRADE`, the parts that must all hold.
Each part renders itself two ways — a check on a registry row (the per-row test the
reconciliation runs) and a SQL predicate over ``signals`` (the set-based scope a
scheduled sync selects) — so the two cannot drift apart. ``tests/test_final_trades.py``
holds them to the same answer on SQLite and Postgres. The gap rule ``no_mfe_update``
reuses :data:`MEASURED_FROM_CANDLES`.

Every part's SQL is two-valued (never NULL), so its negation is the complement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, case, func, not_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from alphapulse_dagster.db.tables import signals
from alphapulse_dagster.sync.tiers import _time_or_none


class Part(Protocol):
    def holds(self, row: Mapping[str, Any]) -> bool:
        """The part on one registry row (a dict of ``signals`` columns)."""
        ...

    def sql(self) -> ColumnElement[bool]:
        """The part over ``signals``, true or false (never NULL)."""
        ...


def _held(row: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return (row["field_provenance"] or {}).get(name) or {}


def _provenance(name: str, key: str) -> ColumnElement[Any]:
    """``field_provenance.<name>.<key>`` as text (SQL NULL when absent)."""
    return signals.c.field_provenance[name][key].as_string()


class _Instant(FunctionElement[Any]):
    """A timestamp column or an ISO text stamp as an instant that compares with another on
    either back end (SQLite keeps timestamps as text, in another format than the stamp)."""

    name = "instant"
    inherit_cache = True


@compiles(_Instant, "sqlite")
def _instant_sqlite(element: _Instant, compiler: SQLCompiler, **kw: Any) -> str:
    return f"julianday({compiler.process(element.clauses, **kw)})"


@compiles(_Instant)
def _instant(element: _Instant, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMP WITH TIME ZONE)"


@dataclass(frozen=True)
class IsSet:
    """A registry column has a value (e.g. ``closed_at``: the trade is closed)."""

    column: str

    def holds(self, row: Mapping[str, Any]) -> bool:
        return row[self.column] is not None

    def sql(self) -> ColumnElement[bool]:
        return signals.c[self.column].is_not(None)


@dataclass(frozen=True)
class HeldByTier:
    """A field's provenance names ``tier`` as its source."""

    field: str
    tier: str

    def holds(self, row: Mapping[str, Any]) -> bool:
        return _held(row, self.field).get("tier") == self.tier

    def sql(self) -> ColumnElement[bool]:
        return func.coalesce(_provenance(self.field, "tier"), "") == self.tier


@dataclass(frozen=True)
class MeasuredSince:
    """A field was last written (its provenance's ``at``, an ISO stamp the sync writes)
    at or after the time in ``column``; false when either time is missing."""

    field: str
    column: str

    def holds(self, row: Mapping[str, Any]) -> bool:
        measured_at, since = _time_or_none(_held(row, self.field).get("at")), row[self.column]
        return measured_at is not None and since is not None and measured_at >= since

    def sql(self) -> ColumnElement[bool]:
        measured_at = _Instant(_provenance(self.field, "at"))
        return case((measured_at >= _Instant(signals.c[self.column]), True), else_=False)


MEASURED_FROM_CANDLES = HeldByTier("mfe", "1")
FINAL_TRADE: tuple[Part, ...] = (
    IsSet("closed_at"),
    MEASURED_FROM_CANDLES,
    MeasuredSince("mfe", "closed_at"),
)


def is_final(row: Mapping[str, Any]) -> bool:
    """Whether the trade in ``row`` is final (:data:`FINAL_TRADE`)."""
    return all(part.holds(row) for part in FINAL_TRADE)


def not_final_sql() -> ColumnElement[bool]:
    """:func:`is_final`'s complement over ``signals`` (SQL)."""
    return not_(and_(*(part.sql() for part in FINAL_TRADE)))
