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

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, case, func, null, select

from alphapulse_dagster.db.tables import ai_signals_mtf, mtf_entry_analysis_history

FALLBACK_PATTERNS = ("INSUFFICIENT_DATA", "REFINEMENT_ERROR")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _pct(numerator: float, denominator: float) -> float | None:
    return round(100.0 * numerator / denominator, 4) if denominator else None


def _utc_day(connection: Connection, column: Any) -> Any:
    """Whole UTC days since the epoch of a timestamp column, in SQL (a GROUP BY key)."""
    if connection.dialect.name == "postgresql":
        return func.floor(func.extract("epoch", column) / 86400)
    # SQLite keeps naive UTC text; strftime('%s') reads it as UTC
    return func.cast(func.strftime("%s", column), Integer) // 86400


def mtf_metrics(
    connection: Connection, now: datetime, window: tuple[datetime, datetime] | None = None
) -> dict[str, Any]:
    """The metrics above as a JSON-able dict (averages are None when there is no signal)."""
    return _metrics(connection, now, window, by_day=False)[None]


def mtf_metrics_by_day(
    connection: Connection, now: datetime, start: datetime, end: datetime
) -> dict[str, dict[str, Any]]:
    """The metrics of each UTC day of ``[start, end)`` (``YYYY-MM-DD`` → metrics), from one
    grouped query per figure; ``signals_last_24h`` is then the day's own count (as of the
    day's end or ``now``, whichever is first). Days without a signal are absent."""
    return _metrics(connection, now, (start, end), by_day=True)  # type: ignore[return-value]


def _metrics(
    connection: Connection,
    now: datetime,
    window: tuple[datetime, datetime] | None,
    by_day: bool,
) -> dict[str | None, dict[str, Any]]:
    s = ai_signals_mtf.c
    refined_limit = s.entry_strategy != "MARKET_ENTRY"
    h = mtf_entry_analysis_history.c
    in_window = [] if window is None else [s.timestamp >= window[0], s.timestamp < window[1]]
    history_window = [] if window is None else [h.timestamp >= window[0], h.timestamp < window[1]]
    # the whole table is one group, keyed None (no GROUP BY: Postgres rejects a constant)
    day = _utc_day(connection, s.timestamp).label("day") if by_day else null().label("day")
    history_day = _utc_day(connection, h.timestamp).label("day") if by_day else null().label("day")
    days = [day] if by_day else []
    history_days = [history_day] if by_day else []
    last_24h = (
        func.count()
        if by_day
        else func.sum(case((s.timestamp > now - timedelta(hours=24), 1), else_=0))
    )
    totals = connection.execute(
        select(
            day,
            func.count(),
            func.avg(s.entry_confidence),
            func.avg(s.risk_reward_ratio),
            func.avg(s.signal_confidence),
            func.avg(s.entry_improvement_bps),
            func.sum(case((s.entry_strategy != "MARKET_ENTRY", 1), else_=0)),
            func.sum(case((refined_limit & s.status.in_(("CONFIRMED", "CLOSED")), 1), else_=0)),
            func.sum(case((refined_limit & (s.status_reason == "EXPIRED"), 1), else_=0)),
            last_24h,
        )
        .where(*in_window)
        .group_by(*days)
    ).all()
    by_strategy: dict[Any, dict[str, int]] = {}
    for key, strategy, n in connection.execute(
        select(day, s.entry_strategy, func.count())
        .where(*in_window)
        .group_by(*days, s.entry_strategy)
    ).all():
        by_strategy.setdefault(key, {})[strategy] = int(n)
    fallbacks: dict[Any, dict[str, int]] = {}
    for key, pattern, n in connection.execute(
        select(day, s.entry_pattern, func.count())
        .where(s.entry_pattern.in_(FALLBACK_PATTERNS), *in_window)
        .group_by(*days, s.entry_pattern)
    ).all():
        fallbacks.setdefault(key, {})[pattern] = int(n)
    duplicates: dict[Any, int] = {
        key: int(n)
        for key, n in connection.execute(
            select(history_day, func.count())
            .select_from(mtf_entry_analysis_history)
            .where(h.signal_id.is_(None), *history_window)
            .group_by(*history_days)
        ).all()
    }

    def rounded(value: Any) -> float | None:
        return None if value is None else round(float(value), 6)

    def key_of(value: Any) -> str | None:
        if value is None:
            return None
        return (_EPOCH + timedelta(days=int(value))).strftime("%Y-%m-%d")

    result: dict[str | None, dict[str, Any]] = {}
    for key, count, avg_entry, avg_rr, avg_signal, avg_bps, refined, filled, expired, n24 in totals:
        filled, expired, refined = int(filled or 0), int(expired or 0), int(refined or 0)
        result[key_of(key)] = {
            "total_signals": int(count),
            "strategy_distribution": dict(sorted(by_strategy.get(key, {}).items())),
            "avg_entry_confidence": rounded(avg_entry),
            "avg_risk_reward_ratio": rounded(avg_rr),
            "avg_signal_confidence": rounded(avg_signal),
            "refinement_success_rate": _pct(refined, count),
            "fill_rate": _pct(filled, filled + expired),
            "mean_entry_improvement_bps": rounded(avg_bps),
            "signals_last_24h": int(n24 or 0),
            "fallbacks": {p: int(fallbacks.get(key, {}).get(p, 0)) for p in FALLBACK_PATTERNS},
            "duplicates_skipped": int(duplicates.get(key, 0)),
        }
    return result
