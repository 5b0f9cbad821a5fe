"""The write plan of one chunk of signals, and the one function that writes it.

A sync cycle decides everything a chunk writes before writing any of it — the fold's
rows, the reconciliation's fields and audit rows, the gaps opened and resolved, the health
scores — as a :class:`ChunkPlan`, a plain value. :func:`plan_writes` builds it from each
row as stored and as it will be stored (so each row is written once, with every step's
columns); :func:`write_plan` writes it in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from alphapulse_dagster.db.bulk import insert_rows, json_merge, update_rows
from alphapulse_dagster.db.tables import signal_gaps, signals, sync_audit_log
from alphapulse_dagster.sync.lifecycle import PROJECTED_COLUMNS

EMPTY_ROW: dict[str, Any] = dict.fromkeys(str(name) for name in signals.c.keys())
# written on insert even when empty (a JSON column's None is then JSON null, as the fold
# writes it); any other empty column is left out (SQL NULL)
_INSERTED: frozenset[str] = frozenset(
    (*PROJECTED_COLUMNS, "field_provenance", "data_confidence", "signal_id", "updated_at")
)
# a float mean of the provenance's confidences: equal documents in another key order may
# differ in the last bit, so it changes with the provenance, never alone
_FOLLOWS = frozenset(("data_confidence", "updated_at"))


@dataclass
class ChunkPlan:
    """Everything one chunk writes. ``inserts``: new registry rows, whole; ``updates``:
    the changed columns of stored rows (with their ``signal_id``); ``rows``: every
    inserted or changed row as it will be stored (for the cycle's copy of the registry)."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    gap_opens: list[dict[str, Any]] = field(default_factory=list)
    gap_resolves: list[int] = field(default_factory=list)
    gap_updates: list[dict[str, Any]] = field(default_factory=list)  # with their gap_id
    rows: list[dict[str, Any]] = field(default_factory=list)


def plan_writes(
    stored: Mapping[str, Mapping[str, Any] | None],
    final: Mapping[str, dict[str, Any]],
    now: datetime,
) -> ChunkPlan:
    """The registry writes that take each row of ``final`` from how it is ``stored``
    (None: not stored yet) to how it will be: a whole row for a new signal, the columns
    that differ for a stored one (the provenance as a merge of the keys that changed,
    where no key was removed). ``updated_at`` is ``now`` on every written row."""
    plan = ChunkPlan()
    for signal_id, row in final.items():
        old = stored.get(signal_id)
        if old is None:
            whole = {**EMPTY_ROW, **row, "signal_id": signal_id, "updated_at": now}
            plan.inserts.append({c: v for c, v in whole.items() if v is not None or c in _INSERTED})
            plan.rows.append(whole)
            continue
        if row is old:
            continue
        changed = {c: v for c, v in row.items() if v != old.get(c) and c not in _FOLLOWS}
        if not changed:
            continue
        if row.get("data_confidence") != old.get("data_confidence"):
            changed["data_confidence"] = row["data_confidence"]
        if "field_provenance" in changed:
            changed["field_provenance"] = json_merge(
                old["field_provenance"], changed["field_provenance"]
            )
        plan.updates.append({**changed, "signal_id": signal_id, "updated_at": now})
        plan.rows.append({**row, "updated_at": now})
    return plan


def write_plan(conn: Connection, plan: ChunkPlan, now: datetime) -> None:
    """Write ``plan`` in ``conn``'s transaction: registry rows, audit rows, gaps. Only
    batch writes (:mod:`~alphapulse_dagster.db.bulk`), so ``conn`` may be in pipeline
    mode."""
    insert_rows(conn, signals, plan.inserts)
    update_rows(conn, signals, plan.updates)
    insert_rows(conn, sync_audit_log, plan.audits)
    insert_rows(conn, signal_gaps, plan.gap_opens)
    update_rows(conn, signal_gaps, [{"gap_id": i, "resolved_at": now} for i in plan.gap_resolves])
    update_rows(conn, signal_gaps, plan.gap_updates)
