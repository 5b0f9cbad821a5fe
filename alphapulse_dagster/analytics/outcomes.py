"""Signal outcomes (SPEC §17): each planned trade (``entry_modes``) read from candles by the
one trade rule (``signals/trade_management``), one vectorised call per instrument.

Rows are those of the ``signal_outcomes`` table: status ``OPEN`` / ``CLOSED`` /
``NOT_FILLED``; prices in quote currency; ``entry_price`` is the price the trade filled at
(a limit gapped through: the bar's open), the planned level until then; R = signed
(exit − entry) / |entry − stop|;
``entry_improvement_bps`` = signed (market − entry) / market × 10⁴ (+ = better than the
close at the signal); ``evaluated_at`` = the data horizon the row was read at (the last
bar close seen, at most the caller's as-of time).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from alphapulse_dagster.market.bar_series import BarSeries, to_ns
from alphapulse_dagster.signals.trade_management import (
    EXIT_REASONS,
    NOT_FILLED,
    TradeResults,
    TradeRule,
    Trades,
    manage_trades,
)

OUTCOME_COLUMNS = [
    "signal_id", "entry_mode", "source", "symbol", "direction", "timeframe", "signal_time",
    "signal_timeframe", "entry_strategy", "entry_pattern", "htf_agreement", "session",
    "consensus_size", "heads", "status", "market_price", "entry_price", "stop_loss",
    "first_target", "last_target", "entry_improvement_bps", "filled_at", "exit_at",
    "exit_price", "exit_reason", "r_multiple", "mfe_r", "mae_r", "mfe_price", "mae_price",
    "bars_to_mfe", "bars_held", "ambiguous", "first_target_hit", "reported_exit_price",
    "reported_exit_reason", "evaluated_at",
]  # fmt: skip
_DESCRIPTIVE = [
    "signal_id", "entry_mode", "source", "symbol", "direction", "timeframe", "signal_time",
    "signal_timeframe", "entry_strategy", "entry_pattern", "htf_agreement", "session",
    "consensus_size", "heads", "market_price", "entry_price", "stop_loss", "first_target",
    "last_target", "reported_exit_price", "reported_exit_reason",
]  # fmt: skip

# (symbol, timeframe, first time needed) -> the bars and, when stored, a finer timeframe's
BarsFor = Callable[[str, str, datetime], tuple[BarSeries, BarSeries | None]]


def _no_trades() -> TradeResults:
    """The results of no trade: the dtype of every field."""
    i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
    none = Trades(i, f, f, f, f, i, i, np.zeros(0, bool))
    return manage_trades(none, BarSeries(i, f, f, f, f, 3600 * 10**9), TradeRule(), 0)


_EMPTY = _no_trades()


def _times(ns: np.ndarray) -> pd.Series:
    """ns -> UTC timestamps; ``NO_TIME`` (int64 min) is NaT's own bit pattern."""
    return pd.Series(pd.to_datetime(ns.astype("datetime64[ns]"), utc=True))


def _trades(plan: pd.DataFrame) -> Trades:
    return Trades(
        sign=np.where(plan["direction"].to_numpy() == "LONG", 1, -1).astype(np.int64),
        entry=plan["entry_price"].to_numpy(np.float64),
        stop=plan["stop_loss"].to_numpy(np.float64),
        first_target=plan["first_target"].to_numpy(np.float64),
        last_target=plan["last_target"].to_numpy(np.float64),
        placed_at=to_ns(plan["placed_at"]),
        expires_at=to_ns(plan["expires_at"]),
        at_market=plan["at_market"].to_numpy(bool),
    )


def _improvement_bps(rows: pd.DataFrame) -> np.ndarray:
    sign = np.where(rows["direction"].to_numpy() == "LONG", 1.0, -1.0)
    market = rows["market_price"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sign * (market - rows["entry_price"].to_numpy(np.float64)) / market * 1e4


def evaluate_outcomes(
    plan: pd.DataFrame, bars_for: BarsFor, rule: TradeRule, as_of: datetime
) -> pd.DataFrame:
    """Outcome rows for ``plan`` (``entry_modes.PLAN_COLUMNS``) as of ``as_of``, in signal
    time order. The trade rule runs once per instrument on arrays of the whole plan; the
    frame is assembled once (no frame per instrument)."""
    if plan.empty:
        return pd.DataFrame(columns=OUTCOME_COLUMNS)
    plan = plan.reset_index(drop=True)
    as_of_ns = int(to_ns(as_of)[0])
    n = len(plan)
    reported = plan["reported_status"].eq(NOT_FILLED).to_numpy()
    trades = _trades(plan)
    out = {f: np.zeros(n, getattr(_EMPTY, f).dtype) for f in TradeResults.__dataclass_fields__}
    horizon = np.zeros(n, np.int64)
    read = np.zeros(n, bool)
    evaluated = np.flatnonzero(~reported)
    groups = plan.iloc[evaluated].groupby(["symbol", "timeframe"]).indices
    for (symbol, timeframe), local in groups.items():
        idx = evaluated[local]
        start = pd.Timestamp(int(trades.placed_at[idx].min()), tz="UTC").to_pydatetime()
        bars, finer = bars_for(str(symbol), str(timeframe), start)
        if not len(bars):  # no candles for this instrument: no outcome to read
            continue
        results = manage_trades(trades.take(idx), bars, rule, as_of_ns, finer)
        for f in out:
            out[f][idx] = getattr(results, f)
        seen = int(np.searchsorted(bars.close_ns, as_of_ns, side="right"))
        horizon[idx] = int(bars.close_ns[seen - 1]) if seen else as_of_ns
        read[idx] = True
    rows = np.flatnonzero(read)
    frame = plan.loc[rows, _DESCRIPTIVE].reset_index(drop=True)
    r = {f: v[rows] for f, v in out.items()}
    frame["status"] = r["status"]
    # the price it filled at (a limit gapped through fills at the bar's open)
    planned = frame["entry_price"].to_numpy(np.float64)
    frame["entry_price"] = np.where(np.isfinite(r["fill_price"]), r["fill_price"], planned)
    frame["entry_improvement_bps"] = _improvement_bps(frame)
    frame["filled_at"] = _times(r["filled_at"])
    frame["exit_at"] = _times(r["exit_at"])
    frame["exit_price"] = r["exit_price"]
    frame["exit_reason"] = np.array(EXIT_REASONS, dtype=object)[r["exit_reason"]]
    for f in ("r_multiple", "mfe_r", "mae_r", "mfe_price", "mae_price", "bars_to_mfe",
              "bars_held", "ambiguous", "first_target_hit"):  # fmt: skip
        frame[f] = r[f]
    frame["evaluated_at"] = _times(horizon[rows])
    if reported.any():
        frame = pd.concat([frame, _reported_not_filled(plan[reported], as_of)], ignore_index=True)
    order = np.argsort(to_ns(frame["signal_time"]), kind="stable")
    return frame.iloc[order][OUTCOME_COLUMNS].reset_index(drop=True)


def _reported_not_filled(plan: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    frame = plan[_DESCRIPTIVE].copy().reset_index(drop=True)
    frame["status"] = NOT_FILLED
    frame["entry_improvement_bps"] = np.nan
    for c in ("filled_at", "exit_at"):
        frame[c] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    for c in ("exit_price", "r_multiple"):
        frame[c] = np.nan
    frame["exit_reason"] = None
    for c in ("mfe_r", "mae_r", "mfe_price", "mae_price"):
        frame[c] = 0.0
    frame["bars_to_mfe"] = frame["bars_held"] = 0
    frame["ambiguous"] = frame["first_target_hit"] = False
    frame["evaluated_at"] = pd.Timestamp(as_of)
    return frame


DECISION_FIELDS = (
    "status", "filled_at", "exit_at", "exit_price", "exit_reason", "r_multiple", "mfe_r",
    "mae_r", "bars_held", "ambiguous", "first_target_hit",
)  # fmt: skip


def changed_decisions(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Outcomes that were decided (CLOSED or NOT_FILLED) in ``previous`` and differ in
    ``current`` on any decision field, or are gone from it: these must never exist
    (later candles cannot change a decided outcome). One row per (signal, entry mode)
    with the field that changed first."""
    key = ["signal_id", "entry_mode"]
    before = previous[previous["status"].isin(["CLOSED", "NOT_FILLED"])]
    if before.empty:
        return pd.DataFrame(columns=[*key, "field", "before", "after"])
    merged = before[[*key, *DECISION_FIELDS]].merge(
        current[[*key, *DECISION_FIELDS]], on=key, how="left", suffixes=("", "_now"), indicator=True
    )
    changed = []
    for field in DECISION_FIELDS:
        a, b = merged[field], merged[f"{field}_now"]
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            same = np.isclose(a.astype(float), b.astype(float), rtol=1e-12, equal_nan=True)
        else:
            same = (a == b) | (a.isna() & b.isna())
        changed.append(pd.Series(~np.asarray(same), index=merged.index))
    differs = pd.concat(changed, axis=1)
    differs.columns = list(DECISION_FIELDS)
    bad = differs.any(axis=1) | (merged["_merge"] == "left_only")
    rows = merged[bad]
    first = differs[bad].idxmax(axis=1)
    return pd.DataFrame(
        {
            "signal_id": rows["signal_id"],
            "entry_mode": rows["entry_mode"],
            "field": first,
            "before": [str(rows.at[i, f]) for i, f in first.items()],
            "after": [str(rows.at[i, f"{f}_now"]) for i, f in first.items()],
        }
    ).reset_index(drop=True)
