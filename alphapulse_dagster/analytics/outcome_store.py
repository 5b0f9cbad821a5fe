"""``signal_outcomes`` in the database: read the signals of a window, read their candles,
compute and rewrite the window's outcomes (delete, insert: idempotent), read them back.

A window is a range of *signal* time ``[since, until)``; its outcomes are read from every
candle closed by ``as_of``, so a signal of an earlier day keeps being followed as new
candles arrive until its outcome is decided.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, delete, func, select

from alphapulse_dagster.analytics.entry_modes import PLAN_COLUMNS, mtf_plan, tradingview_plan
from alphapulse_dagster.analytics.outcomes import OUTCOME_COLUMNS, BarsFor, evaluate_outcomes
from alphapulse_dagster.db.bulk import insert_rows
from alphapulse_dagster.db.tables import (
    ai_signals_mtf,
    mtf_entry_analysis_history,
    signal_outcomes,
    signals,
)
from alphapulse_dagster.market.bar_series import BarSeries
from alphapulse_dagster.market.candle_store import load_bar_series
from alphapulse_dagster.signals.trade_management import TradeRule

_TIME_COLUMNS = ("signal_time", "filled_at", "exit_at", "evaluated_at")


def mtf_signals(connection: Connection, since: datetime, until: datetime) -> pd.DataFrame:
    """``ai_signals_mtf`` rows with signal time in ``[since, until)`` and their analysis."""
    s, h = ai_signals_mtf.c, mtf_entry_analysis_history.c
    query = (
        select(ai_signals_mtf, h.analysis)
        .select_from(
            ai_signals_mtf.outerjoin(mtf_entry_analysis_history, h.signal_id == s.signal_id)
        )
        .where(s.timestamp >= since, s.timestamp < until)
    )
    return pd.DataFrame(connection.execute(query).mappings().all())


def tradingview_signals(connection: Connection, since: datetime, until: datetime) -> pd.DataFrame:
    """Registry rows of other sources (the MTF pipeline's own are read from
    ``ai_signals_mtf``) whose signal time (else creation, else entry time) is in the window."""
    c = signals.c
    moment = func.coalesce(c.signal_time, c.created_at, c.confirmed_at)
    query = select(
        c.signal_id, c.source, c.symbol, c.direction, c.timeframe, c.status, c.signal_time,
        c.created_at, c.confirmed_at, c.entry_price, c.stop_loss, c.targets, c.session,
        c.exit_price, c.exit_reason,
    ).where(c.source != "alphapulse", moment >= since, moment < until)  # fmt: skip
    return pd.DataFrame(connection.execute(query).mappings().all())


def plan_window(connection: Connection, since: datetime, until: datetime) -> pd.DataFrame:
    """Every trade (signal × entry mode) of the window, both sources."""
    parts = [
        p
        for p in (
            mtf_plan(mtf_signals(connection, since, until)),
            tradingview_plan(tradingview_signals(connection, since, until)),
        )
        if len(p)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PLAN_COLUMNS)


def candle_reader(connection: Connection, as_of: datetime) -> BarsFor:
    """Bars of one instrument and timeframe from the ``candles`` table, up to ``as_of``."""

    def bars_for(symbol: str, timeframe: str, start: datetime) -> tuple[BarSeries, Any]:
        return load_bar_series(connection, symbol, timeframe, start, as_of)

    return bars_for


def compute_outcomes(
    engine: Engine, since: datetime, until: datetime, rule: TradeRule, as_of: datetime
) -> pd.DataFrame:
    """The window's outcome rows as of ``as_of`` (nothing written)."""
    with engine.connect() as connection:
        plan = plan_window(connection, since, until)
        return evaluate_outcomes(plan, candle_reader(connection, as_of), rule, as_of)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame[OUTCOME_COLUMNS].copy()
    for c in _TIME_COLUMNS:
        stamps = pd.to_datetime(out[c], utc=True)
        out[c] = pd.Series(stamps.dt.to_pydatetime(), index=out.index, dtype=object)
    out = out.astype(object).where(out.notna(), None)
    out["ambiguous"] = out["ambiguous"].map(bool)
    return out.to_dict("records")  # type: ignore[return-value]


def write_outcomes(engine: Engine, outcomes: pd.DataFrame, since: datetime, until: datetime) -> int:
    """Replace the window's rows with ``outcomes`` in one transaction; rows written."""
    rows = _records(outcomes) if len(outcomes) else []
    with engine.begin() as connection:
        connection.execute(
            delete(signal_outcomes).where(
                signal_outcomes.c.signal_time >= since, signal_outcomes.c.signal_time < until
            )
        )
        insert_rows(connection, signal_outcomes, rows)
    return len(rows)


def load_outcomes(
    connection: Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    source: str | None = None,
    symbol: str | None = None,
    entry_modes: tuple[str, ...] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Stored outcomes (every entry mode unless ``entry_modes``)."""
    o = signal_outcomes.c
    query = select(*(o[c] for c in columns or OUTCOME_COLUMNS))
    if since is not None:
        query = query.where(o.signal_time >= since)
    if until is not None:
        query = query.where(o.signal_time < until)
    if source is not None:
        query = query.where(o.source == source)
    if symbol is not None:
        query = query.where(o.symbol == symbol)
    if entry_modes is not None:
        query = query.where(o.entry_mode.in_(entry_modes))
    rows = [tuple(row) for row in connection.execute(query)]  # see load_candles
    frame = pd.DataFrame(rows, columns=columns or OUTCOME_COLUMNS)
    for c in _TIME_COLUMNS:
        if c in frame:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    for c in ("r_multiple", "mfe_r", "mae_r", "entry_improvement_bps"):
        if c in frame:
            frame[c] = frame[c].astype(np.float64)
    return frame


def signal_outcome(connection: Connection, signal_id: str) -> dict[str, Any] | None:
    """The ``actual`` outcome of one signal with its counterfactuals (``modes``)."""
    rows = (
        connection.execute(select(signal_outcomes).where(signal_outcomes.c.signal_id == signal_id))
        .mappings()
        .all()
    )
    if not rows:
        return None
    by_mode = {r["entry_mode"]: dict(r) for r in rows}
    actual = by_mode.pop("actual", None) or {}
    keep = (
        "status", "entry_price", "stop_loss", "filled_at", "exit_at", "exit_price",
        "exit_reason", "r_multiple", "mfe_r", "mae_r", "mfe_price", "mae_price",
        "bars_to_mfe", "bars_held", "ambiguous", "reported_exit_price",
        "reported_exit_reason", "evaluated_at", "timeframe",
    )  # fmt: skip
    outcome = {k: actual.get(k) for k in keep}
    outcome["counterfactuals"] = {
        mode: {k: row.get(k) for k in ("status", "entry_price", "r_multiple", "exit_reason")}
        for mode, row in sorted(by_mode.items())
    }
    return outcome
