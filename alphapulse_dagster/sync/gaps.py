"""Gap detection over a chunk of reconciled rows, and the per-signal health score.

The rules themselves — what opens each gap type, its weight and kind, who can fill it —
are in ``gap_rules.py``. :func:`plan_gaps` runs them for each row against the row's open
``signal_gaps`` and plans the differences: gaps to open, gaps to resolve, and the new
score of each signal whose score changed.

Per-signal health score = 100 − Σ weights of its open gaps, floored at 0
(:func:`signal_health_score`; :func:`stale_score_ids` is the same in SQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, case, exists, func, or_, select, union

from alphapulse_dagster.config import HybridSyncConfig
from alphapulse_dagster.db.tables import signal_gaps, signals
from alphapulse_dagster.sync.gap_rules import GAP_RULES, GAP_TYPES, TIME_DRIVEN_GAPS, GapInputs
from alphapulse_dagster.sync.health_buckets import MAX_SCORE
from alphapulse_dagster.sync.signal_facts import ChunkFacts

OPENED_COLUMNS = ("signal_id", "gap_type", "kind", "weight", "fillable", "detected_at")


class Gap(NamedTuple):
    signal_id: str
    gap_type: str
    kind: str  # actionable | expected
    weight: float
    fillable: bool


def detect_gaps(row: Mapping[str, Any], facts: GapInputs, config: HybridSyncConfig) -> list[Gap]:
    """The open gaps of one registry row, weight and kind from ``config``."""
    gaps = []
    for rule in GAP_RULES:
        fillable = rule.detect(row, facts)
        if fillable is not None:
            held = config.gap_rules[rule.name]
            gaps.append(Gap(row["signal_id"], rule.name, held.kind, held.weight, bool(fillable)))
    return gaps


def signal_health_score(gaps: Iterable[Gap]) -> float:
    """100 − Σ weights of the open gaps, floored at 0."""
    return max(0.0, MAX_SCORE - sum(g.weight for g in gaps))


@dataclass
class GapResult:
    signals_scanned: int = 0
    opened: int = 0
    resolved: int = 0
    open_total: int = 0  # open gaps of the scanned signals after this pass
    by_type: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GAP_TYPES, 0))
    # the gaps this pass opened, as written (for the gap report's contract check)
    opened_rows: list[tuple[Any, ...]] = field(default_factory=list, repr=False)


@dataclass
class GapPlan:
    """What gap detection of a chunk writes: new ``signal_gaps`` rows, the ids of the gaps
    that closed, open gaps whose configured kind or weight changed, and each signal's new
    ``health_score`` (only those that changed)."""

    opens: list[dict[str, Any]] = field(default_factory=list)
    resolves: list[int] = field(default_factory=list)
    reweighed: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GapPass:
    """One gap pass's settings: the time, the rules' weights and kinds, the run."""

    now: datetime
    config: HybridSyncConfig
    sync_run_id: str


def plan_gaps(
    rows: Sequence[Mapping[str, Any]], facts: ChunkFacts, run: GapPass, result: GapResult
) -> GapPlan:
    """Detect the gaps of ``rows`` against their open gaps (``facts.open_gaps``), adding
    the pass's counts to ``result``."""
    plan = GapPlan()
    for row in rows:
        signal_id = row["signal_id"]
        created = facts.created.get(signal_id)
        inputs = GapInputs(
            has_created=signal_id in facts.with_created,
            payload=created.payload if created is not None else {},
            now=run.now,
            config=run.config,
        )
        gaps = detect_gaps(row, inputs, run.config)
        held = facts.open_gaps.get(signal_id, {})
        for gap in gaps:
            result.by_type[gap.gap_type] = result.by_type.get(gap.gap_type, 0) + 1
            stored = held.get(gap.gap_type)
            if stored is not None and (stored.kind, stored.weight) != (gap.kind, gap.weight):
                plan.reweighed.append(
                    {"gap_id": stored.gap_id, "kind": gap.kind, "weight": gap.weight}
                )
            if stored is None:
                plan.opens.append(
                    {
                        "signal_id": signal_id,
                        "gap_type": gap.gap_type,
                        "kind": gap.kind,
                        "weight": gap.weight,
                        "fillable": gap.fillable,
                        "detected_at": run.now,
                        "resolved_at": None,
                        "sync_run_id": run.sync_run_id,
                    }
                )
        current = {g.gap_type for g in gaps}
        plan.resolves.extend(gap.gap_id for name, gap in held.items() if name not in current)
        score = signal_health_score(gaps)
        if row["health_score"] is None or float(row["health_score"]) != score:
            plan.scores[signal_id] = score
        result.open_total += len(gaps)
        result.signals_scanned += 1
    result.opened += len(plan.opens)
    result.opened_rows.extend(tuple(row[c] for c in OPENED_COLUMNS) for row in plan.opens)
    result.resolved += len(plan.resolves)
    return plan


def time_driven_gap_ids(conn: Connection, now: datetime, config: HybridSyncConfig) -> list[str]:
    """Signals whose time-driven gap (a rule with a ``due`` predicate) is due to open, or
    is open but no longer due — the rule's SQL predicate compared with the open gaps."""
    queries = []
    for rule in TIME_DRIVEN_GAPS:
        assert rule.due is not None
        due = rule.due(now, config)
        is_open = exists(
            select(signal_gaps.c.gap_id).where(
                signal_gaps.c.signal_id == signals.c.signal_id,
                signal_gaps.c.gap_type == rule.name,
                signal_gaps.c.resolved_at.is_(None),
            )
        )
        queries.append(select(signals.c.signal_id).where(due, ~is_open))
        queries.append(
            select(signals.c.signal_id)
            .join(signal_gaps, signal_gaps.c.signal_id == signals.c.signal_id)
            .where(
                signal_gaps.c.gap_type == rule.name,
                signal_gaps.c.resolved_at.is_(None),
                ~due,
            )
        )
    return [r[0] for r in conn.execute(union(*queries))] if queries else []


def stale_score_ids(conn: Connection, config: HybridSyncConfig) -> list[str]:
    """Signals whose ``health_score`` does not match their open gaps under the current
    weights: never scanned (NULL), or the weights changed. A full pass re-detects them."""
    weight = case(
        *((signal_gaps.c.gap_type == name, rule.weight) for name, rule in config.gap_rules.items()),
        else_=signal_gaps.c.weight,
    )
    open_weight = (
        select(signal_gaps.c.signal_id, func.sum(weight).label("w"))
        .where(signal_gaps.c.resolved_at.is_(None))
        .group_by(signal_gaps.c.signal_id)
        .subquery()
    )
    expected = MAX_SCORE - func.coalesce(open_weight.c.w, 0.0)
    expected = case((expected < 0.0, 0.0), else_=expected)
    query = (
        select(signals.c.signal_id)
        .select_from(signals.outerjoin(open_weight, open_weight.c.signal_id == signals.c.signal_id))
        .where(
            or_(
                signals.c.health_score.is_(None),
                func.abs(signals.c.health_score - expected) > 1e-6,
            )
        )
    )
    return [r[0] for r in conn.execute(query)]
