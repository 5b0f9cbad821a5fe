"""``signal_outcomes`` in the database: read the signals of a window and their candles,
compute the outcomes that can still change, write the rows that changed, read them back.

A window is a range of *signal* time ``[since, until)``; its outcomes are read from every
candle closed by ``as_of``, so a signal of an earlier day keeps being followed as new
candles arrive until its outcome is decided.

**What a refresh recomputes.** A decided outcome (``CLOSED``, ``NOT_FILLED``) never changes
when later candles arrive (the trade rule's truncation property, and an ERROR check of the
asset), so an MTF signal is *settled* — not read again — once all its outcomes are decided
and none was decided in the last ``RECHECK`` of data (exit, or signal time for an unfilled
limit). A refresh recomputes the new MTF signals, those with an ``OPEN`` outcome, those
decided within ``RECHECK`` (all their entry modes: the decided ones are compared with what
is stored, against the candles that came after — the check), and the TradingView signals
of the window that are not both settled and ``CLOSED`` in the registry (until then their
reported EXIT can still arrive). ``recompute_decided``
recomputes everything (after a change of the rule or its settings).

**What it writes.** Only signals whose rows changed: new, vanished, differing in a compared
field, or ``OPEN`` (its ``evaluated_at`` moves on); each such signal's rows are replaced
(delete, insert) in one transaction. Re-running a window therefore writes nothing new
(idempotent).

Reads are column-wise (``db/columns.read_frame``); inserts are :func:`db.columns.insert_frame`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection, Engine, delete, exists, func, select

from alphapulse_dagster.analytics.entry_modes import PLAN_COLUMNS, mtf_plan, tradingview_plan
from alphapulse_dagster.analytics.outcomes import (
    DECISION_FIELDS,
    OUTCOME_COLUMNS,
    BarsFor,
    evaluate_outcomes,
)
from alphapulse_dagster.db.bulk import in_ids
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
# what a refresh compares to decide that a stored row changed
COMPARED = (*DECISION_FIELDS, "entry_price", "reported_exit_price", "reported_exit_reason")
# the stored columns a refresh reads: the compared ones and what the metadata needs
STORED_COLUMNS = ["signal_id", "entry_mode", "signal_time", *dict.fromkeys(COMPARED)]


# decided outcomes this recent (in data time) are re-read once more against later candles
RECHECK = timedelta(days=1)


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


@dataclass(frozen=True)
class RefreshPart:
    """The recomputed signals of some instruments: ``fresh``, their recomputed rows;
    ``previous``, their stored rows; ``changed``, the signals whose rows are to be
    replaced."""

    fresh: pd.DataFrame
    previous: pd.DataFrame
    changed: set[str]

    @property
    def rows_to_write(self) -> pd.DataFrame:
        return self.fresh[self.fresh["signal_id"].isin(self.changed)]


@dataclass(frozen=True)
class OutcomeRefresh(RefreshPart):
    """A planned refresh of a window (module docstring): its parts put together, and
    ``window``, every row of the window once written (the stored rows of settled signals
    and the fresh rows; ``STORED_COLUMNS``)."""

    window: pd.DataFrame


@dataclass(frozen=True)
class RefreshReads:
    """What a refresh reads before it computes: the window's stored rows
    (``STORED_COLUMNS``) and the trades to recompute."""

    stored: pd.DataFrame
    plan: pd.DataFrame


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Element-wise equality with missing == missing (NaN, None, NaT)."""
    if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
        x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
        return np.asarray((x == y) | (np.isnan(x) & np.isnan(y)))
    missing = a.isna().to_numpy() & b.isna().to_numpy()
    return np.asarray(missing | (a.to_numpy(object) == b.to_numpy(object)))


def _changed_signals(previous: pd.DataFrame, fresh: pd.DataFrame) -> set[str]:
    if previous.empty:  # nothing stored for them: every recomputed signal is new
        return set(fresh["signal_id"].tolist())
    key = ["signal_id", "entry_mode"]
    merged = fresh[[*key, *COMPARED]].merge(
        previous[[*key, *COMPARED]], on=key, how="outer", suffixes=("", "_was"), indicator=True
    )
    differs = (
        (merged["_merge"] != "both").to_numpy()
        | (merged["status"] == "OPEN").to_numpy()
        | (merged["status_was"] == "OPEN").to_numpy()
    )
    for field in COMPARED:
        differs = differs | ~_same(merged[field], merged[f"{field}_was"])
    return set(merged.loc[differs, "signal_id"].tolist())


def read_refresh(
    connection: Connection,
    since: datetime,
    until: datetime,
    as_of: datetime,
    *,
    recompute_decided: bool = False,
) -> RefreshReads:
    """Read what is stored for the window and the trades that can still change
    (everything with ``recompute_decided``)."""
    stored = load_outcomes(connection, since, until, columns=STORED_COLUMNS)
    recheck = None if recompute_decided else as_of - RECHECK
    return RefreshReads(stored, plan_window(connection, since, until, settled_before=recheck))


# trades (signal × entry mode) per part: a part is written while the next is computed
PART_TRADES = 100_000


def _by_instrument(plan: pd.DataFrame, part_trades: int) -> list[pd.DataFrame]:
    """``plan`` cut into parts of whole instruments (a signal's trades stay together),
    each of about ``part_trades`` trades."""
    if len(plan) <= part_trades:
        return [plan]
    sizes = plan.groupby("symbol", sort=True).size()
    part_of = (sizes.cumsum() - sizes) // part_trades  # by each instrument's first trade
    labels = plan["symbol"].map(part_of).to_numpy()
    return [plan[labels == k] for k in np.unique(labels)]


def refresh_parts(
    connection: Connection,
    reads: RefreshReads,
    rule: TradeRule,
    as_of: datetime,
    *,
    part_trades: int | None = None,
) -> Iterator[RefreshPart]:
    """The refresh computed a part of instruments at a time (``PART_TRADES`` trades unless
    ``part_trades``; nothing written), so that a caller can write one part while the next
    is computed. Each part's candles are read on ``connection``, on a thread, while the
    part before is computed (the read is mostly the server's work)."""
    parts = _by_instrument(reads.plan, part_trades or PART_TRADES)
    stored_ids = reads.stored["signal_id"]
    with ThreadPoolExecutor(1, thread_name_prefix="candles") as reader:
        ahead = reader.submit(candle_reader, connection, as_of, parts[0])
        for i, part in enumerate(parts):
            bars_for = ahead.result()
            if i + 1 < len(parts):
                ahead = reader.submit(candle_reader, connection, as_of, parts[i + 1])
            fresh = evaluate_outcomes(part, bars_for, rule, as_of)
            previous = reads.stored[stored_ids.isin(set(part["signal_id"])).to_numpy()]
            yield RefreshPart(fresh, previous, _changed_signals(previous, fresh))


def whole_refresh(reads: RefreshReads, parts: list[RefreshPart]) -> OutcomeRefresh:
    """The parts of a refresh put together, with the window's rows once written."""
    fresh_parts = [p.fresh for p in parts if len(p.fresh)]
    fresh = (
        pd.concat(fresh_parts, ignore_index=True)
        if fresh_parts
        else pd.DataFrame(columns=OUTCOME_COLUMNS)
    )
    previous_parts = [p.previous for p in parts if len(p.previous)]
    stored = reads.stored
    recomputed = stored["signal_id"].isin(set(reads.plan["signal_id"])).to_numpy()
    kept = stored[~recomputed]
    return OutcomeRefresh(
        fresh=fresh,
        previous=(
            pd.concat(previous_parts, ignore_index=True) if previous_parts else stored.iloc[:0]
        ),
        changed=set().union(*(p.changed for p in parts)),
        window=pd.concat([kept, fresh[STORED_COLUMNS]], ignore_index=True) if len(fresh) else kept,
    )


def plan_refresh(
    engine: Engine,
    since: datetime,
    until: datetime,
    rule: TradeRule,
    as_of: datetime,
    *,
    recompute_decided: bool = False,
) -> OutcomeRefresh:
    """Read what is stored, recompute what can still change (nothing written)."""
    with engine.connect() as connection:
        reads = read_refresh(connection, since, until, as_of, recompute_decided=recompute_decided)
        return whole_refresh(reads, list(refresh_parts(connection, reads, rule, as_of)))


def replace_changed(connection: Connection, refresh: RefreshPart) -> int:
    """Replace the rows of the changed signals in the caller's transaction; rows written."""
    rows = refresh.rows_to_write
    replaced = set(refresh.previous["signal_id"]) & refresh.changed
    if replaced:
        o = signal_outcomes.c
        connection.execute(delete(signal_outcomes).where(in_ids(connection, o.signal_id, replaced)))
    insert_frame(connection, signal_outcomes, rows[OUTCOME_COLUMNS])
    return len(rows)


def write_refresh(engine: Engine, refresh: OutcomeRefresh) -> int:
    """Replace the rows of the changed signals in one transaction; rows written."""
    with engine.begin() as connection:
        return replace_changed(connection, refresh)


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
