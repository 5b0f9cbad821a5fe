"""Tiered reconciliation: fill each signal's missing fields from the best source available
(the tiers and the write rule are in ``tiers.py``; Tier 1's measure in ``excursions.py``,
Tier 3's parser in ``trade_id.py``).

:func:`reconcile_rows` plans one chunk — pure, over the rows and their
:class:`~alphapulse_dagster.sync.signal_facts.ChunkFacts`: the rows it changes (new dicts;
an unchanged row is returned as is) and one audit row per changed field. Every write
records ``field_provenance[field] = {tier, confidence, source, at}``. Nothing changes ⇒
nothing is planned (a second sync with no new data is a no-op).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exists, select

from alphapulse_dagster.db.tables import candles, signals
from alphapulse_dagster.sync.events import EventType
from alphapulse_dagster.sync.excursions import candle_excursion
from alphapulse_dagster.sync.final_trades import is_final, not_final_sql
from alphapulse_dagster.sync.lifecycle import KnownEvents, mean_confidence
from alphapulse_dagster.sync.signal_facts import ChunkFacts
from alphapulse_dagster.sync.tiers import FieldChange, candidates, plan_changes


@dataclass
class ReconcileResult:
    signals_seen: int = 0
    signals_changed: int = 0
    fields_changed: int = 0
    by_field: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, int] = field(default_factory=dict)

    def count(self, changes: Sequence[FieldChange]) -> None:
        self.signals_changed += 1
        self.fields_changed += len(changes)
        for change in changes:
            self.by_field[change.field] = self.by_field.get(change.field, 0) + 1
            self.by_tier[change.tier] = self.by_tier.get(change.tier, 0) + 1


@dataclass
class ReconcilePlan:
    """What reconciling a chunk changes: each changed row as it will be stored, and the
    audit rows."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    audits: list[dict[str, Any]] = field(default_factory=list)


def _applied(row: Mapping[str, Any], changes: Sequence[FieldChange], stamp: str) -> dict[str, Any]:
    """A copy of ``row`` with ``changes`` written, each with its provenance (the stored
    row, maybe the cycle's cached one, stays as it is)."""
    work = dict(row)
    provenance = work["field_provenance"] = dict(row["field_provenance"] or {})
    for change in changes:
        work[change.field] = change.new
        provenance[change.field] = {
            "tier": change.tier,
            "confidence": change.confidence,
            "source": change.source,
            "at": stamp,
        }
    return work


def _audit(change: FieldChange, sync_run_id: str, now: datetime) -> dict[str, Any]:
    return {
        "sync_run_id": sync_run_id,
        "signal_id": change.signal_id,
        "field": change.field,
        "old_value": _jsonable(change.old),
        "new_value": _jsonable(change.new),
        "tier": change.tier,
        "confidence": change.confidence,
        "old_confidence": change.old_confidence,
        "reason": change.reason,
        "action_timestamp": now,
    }


def reconcile_rows(
    rows: Sequence[Mapping[str, Any]],
    facts: ChunkFacts,
    now: datetime,
    sync_run_id: str,
    result: ReconcileResult,
) -> ReconcilePlan:
    """Plan the reconciliation of ``rows`` (adding its counts to ``result``). Per row, two
    passes of the tiers: identity, levels and metadata first (Tier 0, 3, 2's targets),
    then the trade's excursions (Tier 1 candles, else Tier 2's MFE_UPDATE snapshot), which
    need the stop and targets the first pass may just have filled."""
    plan = ReconcilePlan()
    stamp = now.isoformat()
    for row in rows:
        signal_id = row["signal_id"]
        result.signals_seen += 1
        # a row whose identity, levels and metadata are all held at 1.0 has nothing the
        # first pass could improve (Tier 3 and Tier 2 propose below 1.0)
        levels: list[FieldChange] = []
        if needs_tier0(row):
            levels = plan_changes(row, candidates(row, facts.created.get(signal_id), None, None))
        levelled = _applied(row, levels, stamp) if levels else row
        measured = None
        if _needs_candles(levelled):
            measured = candle_excursion(levelled, facts.candles.get(levelled["symbol"]), now)
        snapshot = facts.mfe_snapshots.get(signal_id)
        excursions = plan_changes(levelled, candidates(levelled, None, snapshot, measured))
        changes = [*levels, *excursions]
        if not changes:
            continue
        work = _applied(levelled, excursions, stamp)
        work["data_confidence"] = mean_confidence(work["field_provenance"])
        plan.rows[signal_id] = work
        plan.audits.extend(_audit(change, sync_run_id, now) for change in changes)
        result.count(changes)
    return plan


TIER0_FIELDS: tuple[str, ...] = (
    "htf_alignment",
    "session",
    "market_state",
    "signal_time",
    "direction",
    "entry_price",
    "stop_loss",
    "targets",
)
# what Tier 0 writes
_TIER0_WRITES: tuple[str, ...] = (*TIER0_FIELDS, "confirmation_time")
# what Tier 0 reads of a row besides the SIGNAL_CREATED payload
_TIER0_INPUTS: tuple[str, ...] = (*TIER0_FIELDS, "confirmation_time", "confirmed_at")


def tier0_settled(
    before: Mapping[str, Any] | None,
    row: Mapping[str, Any],
    events: KnownEvents | None,
    reconciled_through: int,
) -> bool:
    """Whether Tier 0 is known to change nothing in ``row``, the fold of ``events`` onto
    ``before`` (the row as stored), without reading the SIGNAL_CREATED payload again:

    - every event of ``before`` is at or below ``reconciled_through`` (the ``reconcile``
      cursor): a completed reconciliation saw the row as stored, Tier 0 included;
    - the fold resumed from ``before`` (``events`` are only the new ones) and none of
      them is a SIGNAL_CREATED: the latest SIGNAL_CREATED is the one Tier 0 already used;
    - the fold left every field Tier 0 reads or writes as it was (value and confidence):
      a field it could not fill then, it cannot fill now.

    Tier 0 is then a pure function of unchanged inputs, and the reconciliation of
    ``before`` already applied its result. A resumed MFE_UPDATE on a trade whose targets
    come from Tier 2 — the commonest event — is the case this serves."""
    if before is None or events is None or events.complete:
        return False
    if before["last_event_id"] > reconciled_through:
        return False
    if any(e.event_type == EventType.SIGNAL_CREATED for e in events.events):
        return False
    held: Mapping[str, Any] = before["field_provenance"] or {}
    now_held: Mapping[str, Any] = row["field_provenance"] or {}
    for name in _TIER0_INPUTS:
        if row[name] != before[name]:
            return False
        entry, was = now_held.get(name), held.get(name)
        # (the fold shares the entries it leaves alone: the same object, nothing to compare)
        if entry is not was and (entry or {}).get("confidence") != (was or {}).get("confidence"):
            return False
    return True


def needs_tier0(row: Mapping[str, Any]) -> bool:
    """Whether a SIGNAL_CREATED could still improve a field of ``row`` (some Tier-0 field
    empty or held below 1.0). Lets a warm sync skip reading payloads it cannot use."""
    provenance: Mapping[str, Any] = row["field_provenance"] or {}
    for name in _TIER0_WRITES:
        if name == "confirmation_time" and row["confirmed_at"] is None:
            continue
        held = provenance.get(name)
        if row[name] is None or held is None or float(held.get("confidence", 0)) < 1.0:
            return True
    return False


def _needs_candles(row: Mapping[str, Any]) -> bool:
    if row["confirmed_at"] is None or row["entry_price"] is None:
        return False
    if row["direction"] not in ("LONG", "SHORT"):
        return False
    return not is_final(row)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def needs_candles(row: Mapping[str, Any]) -> bool:
    """A confirmed trade that is not final (``final_trades.py``): Tier 1 may (re)measure
    it."""
    return row["confirmed_at"] is not None and not is_final(row)


def all_signal_ids(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(select(signals.c.signal_id).order_by(signals.c.signal_id))]


def tier1_signal_ids(conn: Connection) -> list[str]:
    """Trades Tier 1 may (re)measure — the only reconciliation input that changes with time
    alone: :func:`needs_candles` in SQL, on a symbol that has candles."""
    query = select(signals.c.signal_id).where(
        signals.c.confirmed_at.is_not(None),
        not_final_sql(),
        exists(select(candles.c.symbol).where(candles.c.symbol == signals.c.symbol)),
    )
    return [r[0] for r in conn.execute(query)]
