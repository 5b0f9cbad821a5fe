"""A refresh of a window's ``signal_outcomes``: re-read what can still change, write the
rows that changed.

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

**How it runs.** Reads first (the stored rows, the trades: :func:`read_refresh`), then a
part of whole instruments at a time (:func:`refresh_parts`), so that a caller writes one
part (:func:`replace_changed`) while the next is computed and the one after has its
candles read; the caller keeps every part in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, delete

from alphapulse_dagster.analytics.outcome_store import candle_reader, load_outcomes, plan_window
from alphapulse_dagster.analytics.outcomes import (
    DECISION_FIELDS,
    OUTCOME_COLUMNS,
    evaluate_outcomes,
)
from alphapulse_dagster.db.bulk import in_ids
from alphapulse_dagster.db.columns import insert_frame
from alphapulse_dagster.db.tables import signal_outcomes
from alphapulse_dagster.signals.trade_management import TradeRule

# what a refresh compares to decide that a stored row changed
COMPARED = (*DECISION_FIELDS, "entry_price", "reported_exit_price", "reported_exit_reason")
# the stored columns a refresh reads: the compared ones and what the metadata needs
STORED_COLUMNS = ["signal_id", "entry_mode", "signal_time", *dict.fromkeys(COMPARED)]


# decided outcomes this recent (in data time) are re-read once more against later candles
RECHECK = timedelta(days=1)


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
