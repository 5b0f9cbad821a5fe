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

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select

from alphapulse_dagster.config import HybridSyncConfig
from alphapulse_dagster.db.tables import signal_gaps, signal_health_metrics, signals
from alphapulse_dagster.gaps import GAP_TYPES


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


def _signal_moment():  # type: ignore[no-untyped-def]
    return func.coalesce(signals.c.signal_time, signals.c.created_at, signals.c.confirmed_at)


def health_report(
    conn: Connection,
    now: datetime,
    config: HybridSyncConfig,
    sync_run_id: str | None = None,
    persist: bool = False,
) -> HealthReport:
    """Measure the system's health at ``now``; with ``persist`` also append the
    ``signal_health_metrics`` row (the API serves the latest one as ``/health``)."""
    since = now - timedelta(days=config.health_window_days)
    in_window = _signal_moment() >= since
    # one pass over the window's signals, one grouped pass over their open gaps
    count, mean_score, mean_confidence, confirmed = conn.execute(
        select(
            func.count(),
            func.avg(func.coalesce(signals.c.health_score, 100.0)),
            func.avg(signals.c.data_confidence),
            func.count().filter(signals.c.status.in_(("CONFIRMED", "CLOSED"))),
        ).where(in_window)
    ).one()
    count, confirmed = int(count or 0), int(confirmed or 0)
    health_score = round(float(mean_score), 2) if count else 100.0

    by_type = dict.fromkeys(GAP_TYPES, 0)
    by_kind: dict[str, int] = {"actionable": 0, "expected": 0}
    manual = 0
    grouped = conn.execute(
        select(signal_gaps.c.gap_type, signal_gaps.c.kind, signal_gaps.c.fillable, func.count())
        .select_from(signal_gaps.join(signals, signals.c.signal_id == signal_gaps.c.signal_id))
        .where(signal_gaps.c.resolved_at.is_(None), in_window)
        .group_by(signal_gaps.c.gap_type, signal_gaps.c.kind, signal_gaps.c.fillable)
    )
    for gap_type, kind, fillable, n in grouped:
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
        data_confidence=None if mean_confidence is None else round(float(mean_confidence), 4),
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
