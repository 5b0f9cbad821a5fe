"""Signal health: the system report of SPEC §9, persisted to ``signal_health_metrics``.

Over the signals *in the window* — those whose signal time (else created / confirmed time)
is within ``hybrid_sync.health_window_days`` of ``now``:

- ``total_gaps``: open gaps (``signal_gaps.resolved_at`` IS NULL), by type and by kind;
- ``health_score``: the mean of the per-signal scores (100 − Σ weights of open gaps,
  floored at 0), so 100 = every signal complete; no signals ⇒ 100;
- ``signal_coverage``: of the signals ever confirmed (status CONFIRMED or CLOSED), the
  share with a SIGNAL_CREATED event (i.e. without an open ``no_signal_created`` gap);
  None when none was confirmed;
- ``data_confidence``: the mean of the per-signal mean field confidence
  (``signals.data_confidence``, kept with ``field_provenance``); None when empty;
- ``manual_intervention``: open gaps that no tier can fill (``fillable`` false);
- ``signals``: how many signals are in the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, Connection, cast, func, insert, literal_column, select

from alphapulse_dagster.clock import as_utc
from alphapulse_dagster.config import HybridSyncConfig
from alphapulse_dagster.db.tables import (
    signal_gap_buckets,
    signal_gaps,
    signal_health_buckets,
    signal_health_metrics,
    signals,
)
from alphapulse_dagster.sync.gap_rules import GAP_TYPES
from alphapulse_dagster.sync.health_buckets import BUCKET_SECONDS, EVER_CONFIRMED, MAX_SCORE, SCALE


@dataclass(frozen=True)
class HealthReport:
    measured_at: datetime
    signals: int
    total_gaps: int
    health_score: float
    signal_coverage: float | None
    data_confidence: float | None
    manual_intervention: int
    gap_breakdown: dict[str, int]
    kind_breakdown: dict[str, int]
    confirmed_signals: int = 0
    window_days: int = 30
    expected_gap_types: tuple[str, ...] = field(default=())

    def as_api(self) -> dict[str, Any]:
        """The pinned ``GET /health`` shape (SPEC §16)."""
        return {
            "total_gaps": self.total_gaps,
            "health_score": self.health_score,
            "gap_breakdown": dict(self.gap_breakdown),
            "signal_coverage": self.signal_coverage,
            "data_confidence": self.data_confidence,
            "manual_intervention": self.manual_intervention,
            "signals": self.signals,
        }

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["measured_at"] = self.measured_at.isoformat()
        out["expected_gap_types"] = list(self.expected_gap_types)
        return out


def signal_moment():  # type: ignore[no-untyped-def]
    """When a signal happened: its signal time, else its SIGNAL_CREATED time, else its ENTRY
    time (UTC). The health window and All Signals' time filter; indexed (ix_signals_moment)."""
    return func.coalesce(signals.c.signal_time, signals.c.created_at, signals.c.confirmed_at)


def _scaled(value):  # type: ignore[no-untyped-def]
    # the triggers' expression (health_buckets.scaled)
    return cast(func.round(value * literal_column(f"{SCALE}.0")), BigInteger)


def _signal_totals(conn: Connection, since: datetime) -> tuple[list[int], int]:
    """(signals, Σ score, Σ confidence, signals with a confidence, confirmed) over the
    signals whose moment is ≥ ``since``: the whole hours after ``since`` from the running
    aggregates, the partial hour holding ``since`` from ``signals`` (an indexed range);
    and the edge bucket's number."""
    edge = math.floor(since.timestamp() / BUCKET_SECONDS)
    edge_end = datetime.fromtimestamp((edge + 1) * BUCKET_SECONDS, UTC)
    moment = signal_moment()
    whole = conn.execute(
        select(
            func.sum(signal_health_buckets.c.signals),
            func.sum(signal_health_buckets.c.score_sum),
            func.sum(signal_health_buckets.c.confidence_sum),
            func.sum(signal_health_buckets.c.confidence_n),
            func.sum(signal_health_buckets.c.confirmed),
        ).where(signal_health_buckets.c.bucket > edge)
    ).one()
    partial = conn.execute(
        select(
            func.count(),
            func.sum(
                _scaled(func.coalesce(signals.c.health_score, literal_column(f"{MAX_SCORE}")))
            ),
            func.sum(_scaled(signals.c.data_confidence)),
            func.count(signals.c.data_confidence),
            func.count().filter(signals.c.status.in_(EVER_CONFIRMED)),
        ).where(moment >= since, moment < edge_end)
    ).one()
    totals = [int(a or 0) + int(b or 0) for a, b in zip(whole, partial, strict=True)]
    return totals, edge


def health_report(
    conn: Connection,
    now: datetime,
    config: HybridSyncConfig,
    sync_run_id: str | None = None,
    persist: bool = False,
) -> HealthReport:
    """Measure the system's health at ``now``; with ``persist`` also append the
    ``signal_health_metrics`` row (the API serves the latest one as ``/health``).

    Reads the running per-hour aggregates (``signal_health_buckets`` /
    ``signal_gap_buckets``, kept by triggers) plus the one partial hour at the window's
    edge, so its cost does not grow with the window. Means are exact: per-signal scores and
    confidences are summed as integers in units of 1e-9, then rounded (2 / 4 places)."""
    since = as_utc(now) - timedelta(days=config.health_window_days)
    (count, score_sum, confidence_sum, confidence_n, confirmed), edge = _signal_totals(conn, since)
    health_score = float(round(Fraction(score_sum, count * SCALE), 2)) if count else MAX_SCORE
    mean_confidence = (
        float(round(Fraction(confidence_sum, confidence_n * SCALE), 4)) if confidence_n else None
    )

    by_type = dict.fromkeys(GAP_TYPES, 0)
    by_kind: dict[str, int] = {"actionable": 0, "expected": 0}
    manual = 0
    edge_end = datetime.fromtimestamp((edge + 1) * BUCKET_SECONDS, UTC)
    moment = signal_moment()
    whole = (
        select(
            signal_gap_buckets.c.gap_type,
            signal_gap_buckets.c.kind,
            signal_gap_buckets.c.fillable,
            func.sum(signal_gap_buckets.c.gaps),
        )
        .where(signal_gap_buckets.c.bucket > edge)
        .group_by(
            signal_gap_buckets.c.gap_type, signal_gap_buckets.c.kind, signal_gap_buckets.c.fillable
        )
    )
    partial = (
        select(signal_gaps.c.gap_type, signal_gaps.c.kind, signal_gaps.c.fillable, func.count())
        .select_from(signal_gaps.join(signals, signals.c.signal_id == signal_gaps.c.signal_id))
        .where(signal_gaps.c.resolved_at.is_(None), moment >= since, moment < edge_end)
        .group_by(signal_gaps.c.gap_type, signal_gaps.c.kind, signal_gaps.c.fillable)
    )
    for query in (whole, partial):
        for gap_type, kind, fillable, n in conn.execute(query):
            if not n:
                continue
            by_type[gap_type] = by_type.get(gap_type, 0) + int(n)
            by_kind[kind] = by_kind.get(kind, 0) + int(n)
            if not fillable:
                manual += int(n)

    # ever confirmed without SIGNAL_CREATED == an open no_signal_created gap (gaps.py)
    uncovered = by_type.get("no_signal_created", 0)
    coverage = round((confirmed - uncovered) / confirmed, 4) if confirmed else None

    report = HealthReport(
        measured_at=now,
        signals=count,
        total_gaps=sum(by_type.values()),
        health_score=health_score,
        signal_coverage=coverage,
        data_confidence=mean_confidence,
        manual_intervention=manual,
        gap_breakdown=by_type,
        kind_breakdown=by_kind,
        confirmed_signals=confirmed,
        window_days=config.health_window_days,
        expected_gap_types=tuple(
            name for name, rule in config.gap_rules.items() if rule.kind == "expected"
        ),
    )
    if persist:
        conn.execute(
            insert(signal_health_metrics).values(
                measured_at=now,
                sync_run_id=sync_run_id,
                total_signals=report.signals,
                total_gaps=report.total_gaps,
                health_score=report.health_score,
                signal_coverage=report.signal_coverage,
                data_confidence=report.data_confidence,
                manual_intervention=report.manual_intervention,
                gap_breakdown=report.gap_breakdown,
            )
        )
    return report


def open_gaps_by_type(conn: Connection) -> dict[str, int]:
    """Every open gap of the registry's signals, whatever their moment, by type (every
    type, zeros included): the running aggregates summed over all hours, plus the gaps of
    the few signals without a moment (no bucket holds them). The same counts as grouping
    ``signal_gaps`` by type, without reading every open gap."""
    by_type = dict.fromkeys(GAP_TYPES, 0)
    bucketed = select(signal_gap_buckets.c.gap_type, func.sum(signal_gap_buckets.c.gaps)).group_by(
        signal_gap_buckets.c.gap_type
    )
    unbucketed = (
        select(signal_gaps.c.gap_type, func.count())
        .select_from(signal_gaps.join(signals, signals.c.signal_id == signal_gaps.c.signal_id))
        .where(signal_gaps.c.resolved_at.is_(None), signal_moment().is_(None))
        .group_by(signal_gaps.c.gap_type)
    )
    for query in (bucketed, unbucketed):
        for gap_type, n in conn.execute(query):
            by_type[gap_type] = by_type.get(gap_type, 0) + int(n or 0)
    return by_type


def latest_health(conn: Connection) -> dict[str, Any] | None:
    """The latest persisted report in the ``GET /health`` shape, or None."""
    row = (
        conn.execute(
            select(signal_health_metrics).order_by(signal_health_metrics.c.metric_id.desc())
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return {
        "total_gaps": row["total_gaps"],
        "health_score": row["health_score"],
        "gap_breakdown": row["gap_breakdown"],
        "signal_coverage": row["signal_coverage"],
        "data_confidence": row["data_confidence"],
        "manual_intervention": row["manual_intervention"],
        "signals": row["total_signals"],
    }


def format_health(report: HealthReport) -> str:
    """A readable status block, like the seed's."""
    expected = set(report.expected_gap_types)
    coverage = "n/a" if report.signal_coverage is None else f"{report.signal_coverage:.0%}"
    confidence = "n/a" if report.data_confidence is None else f"{report.data_confidence:.2f}"
    lines = [
        f"Signal health at {report.measured_at:%Y-%m-%d %H:%M:%S} UTC "
        f"(last {report.window_days} days)",
        f"Signals: {report.signals}",
        f"Total Gaps: {report.total_gaps}",
        f"Health Score: {report.health_score:.0f}/100",
        "",
        "Gap Breakdown:",
    ]
    width = max(len(name) for name in report.gap_breakdown) + 1
    for name, n in sorted(report.gap_breakdown.items(), key=lambda kv: (-kv[1], kv[0])):
        if n == 0:
            continue
        note = "  (expected)" if name in expected else ""
        lines.append(f"  {name + ':':<{width}} {n}{note}")
    if report.total_gaps == 0:
        lines.append("  none")
    lines += [
        "",
        f"Gaps by kind: actionable {report.kind_breakdown.get('actionable', 0)}, "
        f"expected {report.kind_breakdown.get('expected', 0)}",
        f"Signal Coverage: {coverage} of {report.confirmed_signals} confirmed signals "
        "have SIGNAL_CREATED",
        f"Data Confidence: {confidence}",
        f"Manual Intervention: {report.manual_intervention or 'None'}"
        + (" gaps no tier can fill" if report.manual_intervention else ""),
    ]
    return "\n".join(lines)
