"""MTF monitoring metrics (the seed's ``_get_mtf_metrics``), computed in SQL.

- ``strategy_distribution`` — stored signals per ``entry_strategy``.
- ``avg_entry_confidence``, ``avg_risk_reward_ratio``, ``avg_signal_confidence``.
- ``refinement_success_rate`` — % of stored signals whose entry was refined to a key level
  (anything but MARKET_ENTRY).
- ``fill_rate`` — % of refined (limit) entries that filled, among those resolved:
  filled / (filled + EXPIRED), refined entries only (``entry_strategy`` other than
  MARKET_ENTRY). A market entry fills at the signal's close by definition and is not
  counted (it used to be, which inflated the rate).
- ``mean_entry_improvement_bps`` — mean improvement of the entry over the market price at
  the signal, in basis points (positive = better than market).
- ``signals_last_24h`` — signals whose signal bar closed in the 24 h before ``now``.
- ``fallbacks`` — entries per fallback pattern (INSUFFICIENT_DATA, REFINEMENT_ERROR).
- ``duplicates_skipped`` — analyses whose signal was skipped for an active duplicate.

With ``window=(start, end)`` every figure covers only the signals whose signal time is in
``[start, end)`` (a day partition's own numbers); without it, every stored signal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from alphapulse_dagster.db.tables import ai_signals_mtf, mtf_entry_analysis_history

FALLBACK_PATTERNS = ("INSUFFICIENT_DATA", "REFINEMENT_ERROR")


def _pct(numerator: float, denominator: float) -> float | None:
    return round(100.0 * numerator / denominator, 4) if denominator else None


def mtf_metrics(
    connection: Connection, now: datetime, window: tuple[datetime, datetime] | None = None
) -> dict[str, Any]:
    """The metrics above as a JSON-able dict (averages are None when there is no signal)."""
    s = ai_signals_mtf.c
    refined_limit = s.entry_strategy != "MARKET_ENTRY"
    h = mtf_entry_analysis_history.c
    in_window = [] if window is None else [s.timestamp >= window[0], s.timestamp < window[1]]
    history_window = [] if window is None else [h.timestamp >= window[0], h.timestamp < window[1]]
    totals = connection.execute(
        select(
            func.count(),
            func.avg(s.entry_confidence),
            func.avg(s.risk_reward_ratio),
            func.avg(s.signal_confidence),
            func.avg(s.entry_improvement_bps),
            func.sum(case((s.entry_strategy != "MARKET_ENTRY", 1), else_=0)),
            func.sum(case((refined_limit & s.status.in_(("CONFIRMED", "CLOSED")), 1), else_=0)),
            func.sum(case((refined_limit & (s.status_reason == "EXPIRED"), 1), else_=0)),
            func.sum(case((s.timestamp > now - timedelta(hours=24), 1), else_=0)),
        ).where(*in_window)
    ).one()
    count, avg_entry, avg_rr, avg_signal, avg_bps, refined, filled, expired, last_24h = totals
    by_strategy: dict[str, int] = dict(
        connection.execute(
            select(s.entry_strategy, func.count()).where(*in_window).group_by(s.entry_strategy)
        ).all()
    )
    fallbacks: dict[str, int] = dict(
        connection.execute(
            select(s.entry_pattern, func.count())
            .where(s.entry_pattern.in_(FALLBACK_PATTERNS), *in_window)
            .group_by(s.entry_pattern)
        ).all()
    )
    duplicates = connection.execute(
        select(func.count())
        .select_from(mtf_entry_analysis_history)
        .where(h.signal_id.is_(None), *history_window)
    ).scalar_one()

    def rounded(value: Any) -> float | None:
        return None if value is None else round(float(value), 6)

    filled, expired, refined = int(filled or 0), int(expired or 0), int(refined or 0)
    return {
        "total_signals": int(count),
        "strategy_distribution": {k: int(v) for k, v in sorted(by_strategy.items())},
        "avg_entry_confidence": rounded(avg_entry),
        "avg_risk_reward_ratio": rounded(avg_rr),
        "avg_signal_confidence": rounded(avg_signal),
        "refinement_success_rate": _pct(refined, count),
        "fill_rate": _pct(filled, filled + expired),
        "mean_entry_improvement_bps": rounded(avg_bps),
        "signals_last_24h": int(last_24h or 0),
        "fallbacks": {p: int(fallbacks.get(p, 0)) for p in FALLBACK_PATTERNS},
        "duplicates_skipped": int(duplicates),
    }
