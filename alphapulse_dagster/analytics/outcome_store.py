"""``signal_outcomes`` in the database: read the signals of a window, their trades and
their candles, compute or replace a window's outcomes, read them back.

A window is a range of *signal* time ``[since, until)``; its outcomes are read from every
candle closed by ``as_of``, so a signal of an earlier day keeps being followed as new
candles arrive until its outcome is decided.

A refresh of a window (what it re-reads, what it writes) is ``outcome_refresh.py``; a
signal is *settled* (:func:`settled`) once every outcome is decided and none was decided
since the refresh's re-check horizon.

Reads are column-wise (``db/columns.read_frame``); inserts are :func:`db.columns.insert_frame`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Engine, delete, exists, func, select

from alphapulse_dagster.analytics.entry_modes import PLAN_COLUMNS, mtf_plan, tradingview_plan
from alphapulse_dagster.analytics.outcomes import OUTCOME_COLUMNS, BarsFor, evaluate_outcomes
from alphapulse_dagster.db.columns import insert_frame, read_frame
from alphapulse_dagster.db.tables import (
    ai_signals_mtf,
    mtf_entry_analysis_history,
    signal_outcomes,
    signals,
)
from alphapulse_dagster.market.bar_series import BarSeries
from alphapulse_dagster.market.candle_store import load_bar_series_of
from alphapulse_dagster.signals.trade_management import TradeRule

# the columns of ai_signals_mtf the entry modes read (entry_modes.mtf_plan)
_MTF_COLUMNS = (
    "signal_id", "symbol", "direction", "signal_timeframe", "entry_timeframe", "timestamp",
    "model_heads_analysis", "market_price", "entry_price", "stop_loss", "take_profits",
    "entry_strategy", "entry_pattern", "atr", "htf_agreement", "expires_at",
)  # fmt: skip


def settled(signal_id: ColumnElement[Any], recheck_since: datetime) -> ColumnElement[bool]:
    """The signal has outcomes, none ``OPEN`` and none decided since ``recheck_since``
    (an exit, or the signal time of an unfilled limit, at or after it)."""
    o = signal_outcomes.c
    has_rows = exists().where(o.signal_id == signal_id)
    pending = exists().where(
        o.signal_id == signal_id,
        (o.status == "OPEN")
        | (o.exit_at >= recheck_since)
        | ((o.status == "NOT_FILLED") & (o.signal_time >= recheck_since)),
    )
    return has_rows & ~pending


def mtf_signals(
    connection: Connection,
    since: datetime,
    until: datetime,
    *,
    settled_before: datetime | None = None,
) -> pd.DataFrame:
    """``ai_signals_mtf`` rows with signal time in ``[since, until)`` and their analysis
    (with ``settled_before``: only the signals not :func:`settled` by then)."""
    s, h = ai_signals_mtf.c, mtf_entry_analysis_history.c
    query = (
        select(*(s[c] for c in _MTF_COLUMNS), h.analysis)
        .select_from(
            ai_signals_mtf.outerjoin(mtf_entry_analysis_history, h.signal_id == s.signal_id)
        )
        .where(s.timestamp >= since, s.timestamp < until)
    )
    if settled_before is not None:
        query = query.where(~settled(s.signal_id, settled_before))
    return read_frame(connection, query)


def tradingview_signals(
    connection: Connection,
    since: datetime,
    until: datetime,
    *,
    settled_before: datetime | None = None,
) -> pd.DataFrame:
    """Registry rows of other sources (the MTF pipeline's own are read from
    ``ai_signals_mtf``) whose signal time (else creation, else entry time) is in the window
    (with ``settled_before``: not those ``CLOSED`` and :func:`settled` by then)."""
    c = signals.c
    moment = func.coalesce(c.signal_time, c.created_at, c.confirmed_at)
    query = select(
        c.signal_id, c.source, c.symbol, c.direction, c.timeframe, c.status, c.signal_time,
        c.created_at, c.confirmed_at, c.entry_price, c.stop_loss, c.targets, c.session,
        c.exit_price, c.exit_reason,
    ).where(c.source != "alphapulse", moment >= since, moment < until)  # fmt: skip
    if settled_before is not None:
        query = query.where(~(settled(c.signal_id, settled_before) & (c.status == "CLOSED")))
    return read_frame(connection, query)


def plan_window(
    connection: Connection,
    since: datetime,
    until: datetime,
    *,
    settled_before: datetime | None = None,
) -> pd.DataFrame:
    """Every trade (signal × entry mode) of the window, both sources (MTF signals not
    :func:`settled` by ``settled_before`` only, when given)."""
    parts = [
        p
        for p in (
            mtf_plan(mtf_signals(connection, since, until, settled_before=settled_before)),
            tradingview_plan(
                tradingview_signals(connection, since, until, settled_before=settled_before)
            ),
        )
        if len(p)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PLAN_COLUMNS)


def candle_reader(connection: Connection, as_of: datetime, plan: pd.DataFrame) -> BarsFor:
    """Bars (and finer bars) of every instrument and timeframe of ``plan`` from the
    ``candles`` table, up to ``as_of``: read column-wise, one query per timeframe, from the
    earliest trade of that timeframe on."""
    loaded: dict[tuple[str, str], tuple[BarSeries, BarSeries | None]] = {}
    for timeframe, rows in plan.groupby("timeframe").groups.items() if len(plan) else ():
        part = plan.loc[rows]
        start = pd.Timestamp(part["placed_at"].min()).to_pydatetime()
        series = load_bar_series_of(connection, part["symbol"], str(timeframe), start, as_of)
        loaded.update({(s, str(timeframe)): bars for s, bars in series.items()})

    def bars_for(symbol: str, timeframe: str, start: datetime) -> tuple[BarSeries, Any]:
        return loaded[(symbol, timeframe)]

    return bars_for


def compute_outcomes(
    engine: Engine, since: datetime, until: datetime, rule: TradeRule, as_of: datetime
) -> pd.DataFrame:
    """The window's outcome rows as of ``as_of``, every signal recomputed (nothing
    written)."""
    with engine.connect() as connection:
        plan = plan_window(connection, since, until)
        return evaluate_outcomes(plan, candle_reader(connection, as_of, plan), rule, as_of)


def write_outcomes(engine: Engine, outcomes: pd.DataFrame, since: datetime, until: datetime) -> int:
    """Replace the window's rows with ``outcomes`` in one transaction; rows written."""
    with engine.begin() as connection:
        connection.execute(
            delete(signal_outcomes).where(
                signal_outcomes.c.signal_time >= since, signal_outcomes.c.signal_time < until
            )
        )
        insert_frame(connection, signal_outcomes, outcomes[OUTCOME_COLUMNS])
    return len(outcomes)


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
    return read_frame(connection, query)


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
