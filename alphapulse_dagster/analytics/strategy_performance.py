"""Strategy performance (SPEC §16–17): which entries, heads and contexts pay, with their
uncertainty, from stored outcomes.

Per group (``group_by``, see :data:`GROUP_KEYS`), over the ``actual`` outcomes (``entry_mode``
groups every mode of the MTF signals instead, so entry methods compare on the same signals):

- ``n_signals``; ``n`` = CLOSED trades, the sample behind every R figure;
- ``fill_rate`` = filled / (filled + NOT_FILLED), fraction in [0, 1] (pending limits excluded);
- ``win_rate`` = share of CLOSED trades that hit their first target before the stop
  (``first_target_hit``, SPEC §17: a break-even exit after the first target is a win);
  ``profitable_rate`` = share of CLOSED trades with R > 0;
- ``expectancy_r`` = mean R of CLOSED trades and ``expectancy_ci``, its seeded bootstrap
  95 % interval (``analytics/bootstrap.py``);
- ``profit_factor`` = Σ winning R / |Σ losing R| (None without a loss);
- ``max_drawdown_r`` = the deepest fall of cumulative R, trades in exit order;
- ``mean_mfe_r``, ``mean_mae_r`` over CLOSED trades; ``entry_improvement_bps`` = mean
  improvement of the entry over the close at the signal.

``flag``: ``small_sample`` when n < 30, else ``ci_crosses_zero`` when the interval holds 0;
a flagged group is not a finding.

``paired``: MTF signals whose actual entry is a refined limit, against the same signal
entered at market. ΔR = R(refined) − R(market), an unfilled limit earning 0 R; over signals
whose two outcomes are decided. ``missed_r`` = mean market R of the signals whose limit did
not fill (what unfilled limits missed), ``n_missed`` of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, delete

from alphapulse_dagster.analytics.bootstrap import DEFAULT_SEED, bootstrap_mean_cis
from alphapulse_dagster.analytics.entry_modes import ACTUAL, MARKET, MARKET_ENTRY
from alphapulse_dagster.analytics.outcome_store import load_outcomes
from alphapulse_dagster.db.bulk import insert_rows
from alphapulse_dagster.db.tables import strategy_performance

GROUP_KEYS = (
    "entry_strategy", "entry_pattern", "source", "symbol", "signal_timeframe",
    "htf_agreement", "session", "consensus_size", "entry_mode",
)  # fmt: skip
HEAD_PREFIX = "head:"
# what every figure and the paired comparison read (strategy_report adds the group key)
_REPORT_COLUMNS = [
    "signal_id", "entry_mode", "signal_time", "entry_strategy", "status", "filled_at",
    "exit_at", "r_multiple", "mfe_r", "mae_r", "entry_improvement_bps", "first_target_hit",
]  # fmt: skip
MIN_N = 30
DAILY_GROUPINGS = ("entry_strategy", "entry_mode", "source")
# what daily_rows reads: the figures' columns and the keys of DAILY_GROUPINGS
PERFORMANCE_COLUMNS = [*_REPORT_COLUMNS, "source"]


def check_group_by(group_by: str) -> str:
    """``group_by`` if known, else a ValueError naming the allowed keys."""
    if group_by in GROUP_KEYS or (group_by.startswith(HEAD_PREFIX) and len(group_by) > 5):
        return group_by
    raise ValueError(
        f"group_by {group_by!r}: expected one of {', '.join(GROUP_KEYS)} or head:<name>"
    )


def _r(value: float | None, digits: int = 6) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _flag(n: int, ci: tuple[float, float] | None) -> str | None:
    if n < MIN_N:
        return "small_sample"
    if ci is None or ci[0] <= 0 <= ci[1]:
        return "ci_crosses_zero"
    return None


def max_drawdown(r_in_exit_order: np.ndarray) -> float:
    """Deepest fall of cumulative R from its running peak (the start counts as 0)."""
    if not len(r_in_exit_order):
        return 0.0
    equity = np.concatenate([[0.0], np.cumsum(r_in_exit_order)])
    return float(np.max(np.maximum.accumulate(equity) - equity))


@dataclass(frozen=True)
class _Rows:
    """The outcome columns the figures need, as arrays, rows in exit order."""

    closed: NDArray[np.bool_]
    filled: NDArray[np.bool_]
    decided: NDArray[np.bool_]
    won: NDArray[np.bool_]
    r: NDArray[np.float64]
    mfe: NDArray[np.float64]
    mae: NDArray[np.float64]
    bps: NDArray[np.float64]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Rows:
        status = frame["status"].to_numpy()
        filled = frame["filled_at"].notna().to_numpy()
        return cls(
            closed=status == "CLOSED",
            filled=filled,
            decided=filled | (status == "NOT_FILLED"),
            won=frame["first_target_hit"].fillna(False).to_numpy(bool),
            r=frame["r_multiple"].to_numpy(np.float64),
            mfe=frame["mfe_r"].to_numpy(np.float64),
            mae=frame["mae_r"].to_numpy(np.float64),
            bps=frame["entry_improvement_bps"].to_numpy(np.float64),
        )


def _in_exit_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by exit time, ties by signal id, unexited last (numpy sorts: no string
    factorisation)."""
    by_id = np.argsort(frame["signal_id"].to_numpy().astype(str), kind="stable")
    exit_ns = pd.to_datetime(frame["exit_at"], utc=True).dt.as_unit("ns").astype("int64")
    exits = np.where(frame["exit_at"].isna().to_numpy(), np.iinfo(np.int64).max, exit_ns)
    order = by_id[np.argsort(exits[by_id], kind="stable")]
    return frame.iloc[order]


def _closed_r(a: _Rows, idx: np.ndarray) -> NDArray[np.float64]:
    return a.r[idx[a.closed[idx]]]


def _figures_of_groups(
    a: _Rows, groups: list[tuple[Any, np.ndarray]], seed: int
) -> list[dict[str, Any]]:
    """:func:`_figures` of each (key, rows) group, their intervals bootstrapped at once."""
    cis = bootstrap_mean_cis([_closed_r(a, idx) for _, idx in groups], seed=seed)
    return [_figures(a, idx, key, ci) for (key, idx), ci in zip(groups, cis, strict=True)]


def _figures(a: _Rows, idx: np.ndarray, key: Any, ci: tuple[float, float] | None) -> dict[str, Any]:
    """The figures of the rows ``idx``; ``ci``: the bootstrap interval of their closed R."""
    closed = idx[a.closed[idx]]
    r = a.r[closed]
    n = len(r)
    wins, losses = r[r > 0].sum(), -r[r < 0].sum()
    decided = int(a.decided[idx].sum())
    bps = a.bps[idx]
    bps = bps[np.isfinite(bps)]
    return {
        "key": None if key is None else str(key),
        "n": n,
        "n_signals": len(idx),
        "fill_rate": _r(a.filled[idx].sum() / decided) if decided else None,
        "win_rate": _r(float(a.won[closed].mean())) if n else None,
        "profitable_rate": _r(float((r > 0).mean())) if n else None,
        "expectancy_r": _r(float(r.mean())) if n else None,
        "expectancy_ci": [_r(ci[0]), _r(ci[1])] if ci else None,
        "profit_factor": _r(wins / losses) if losses > 0 else None,
        "max_drawdown_r": _r(max_drawdown(r)),
        "mean_mfe_r": _r(float(a.mfe[closed].mean())) if n else None,
        "mean_mae_r": _r(float(a.mae[closed].mean())) if n else None,
        "entry_improvement_bps": _r(float(bps.mean())) if len(bps) else None,
        "flag": _flag(n, ci),
    }


def _groups_by_day(days: np.ndarray, keys: np.ndarray) -> list[tuple[int, Any, np.ndarray]]:
    """(day, key, row indices in their original order) per distinct (day, key), by day,
    then key as :func:`_groups_of` orders them (None last)."""
    if not len(days):
        return []
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object), use_na_sentinel=True)
    by_name = sorted(range(len(uniques)), key=lambda i: str(uniques[i]))
    rank = np.empty(len(uniques) + 1, np.int64)
    rank[by_name] = np.arange(len(uniques))
    rank[-1] = len(uniques)  # code -1 (None): after every key
    combined = (days - days.min()) * (len(uniques) + 1) + rank[codes]
    order = np.argsort(combined, kind="stable")
    _, start = np.unique(combined[order], return_index=True)
    bounds = [*start.tolist(), len(order)]
    out = []
    for first, last in itertools.pairwise(bounds):
        idx = order[first:last]
        out.append((int(days[idx[0]]), keys[idx[0]], idx))
    return out


def _groups_of(keys: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(key, row indices in their original order) per distinct key, None last."""
    one_day = np.zeros(len(keys), np.int64)
    return [(key, idx) for _, key, idx in _groups_by_day(one_day, keys)]


def group_figures(rows: pd.DataFrame, key: Any, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The figures of one group's outcome rows (module docstring)."""
    ordered = _in_exit_order(rows)
    return _figures_of_groups(_Rows.of(ordered), [(key, np.arange(len(ordered)))], seed)[0]


@dataclass(frozen=True)
class _Pairs:
    signal_time: pd.Series
    delta: NDArray[np.float64]
    unfilled: NDArray[np.bool_]
    market_r: NDArray[np.float64]


def _pairs(outcomes: pd.DataFrame) -> _Pairs:
    refined = outcomes[
        (outcomes["entry_mode"] == ACTUAL)
        & outcomes["entry_strategy"].notna()
        & (outcomes["entry_strategy"] != MARKET_ENTRY)
    ].set_index("signal_id")
    market = outcomes[outcomes["entry_mode"] == MARKET].set_index("signal_id")
    both = refined[["signal_time", "status", "r_multiple"]].join(
        market[["status", "r_multiple"]], rsuffix="_market", how="inner"
    )
    decided = both["status"].isin(["CLOSED", "NOT_FILLED"]) & (both["status_market"] == "CLOSED")
    both = both[decided]
    unfilled = (both["status"] == "NOT_FILLED").to_numpy()
    market_r = both["r_multiple_market"].to_numpy(np.float64)
    r_refined = np.where(unfilled, 0.0, both["r_multiple"].to_numpy(np.float64))
    return _Pairs(both["signal_time"], r_refined - market_r, unfilled, market_r)


def _paired_figures_of_groups(
    p: _Pairs, groups: list[tuple[Any, np.ndarray]], seed: int
) -> list[dict[str, Any]]:
    """:func:`_paired_figures` of each (key, pairs) group, bootstrapped at once."""
    cis = bootstrap_mean_cis([p.delta[idx] for _, idx in groups], seed=seed)
    return [_paired_figures(p, idx, ci) for (_, idx), ci in zip(groups, cis, strict=True)]


def _paired_figures(p: _Pairs, idx: np.ndarray, ci: tuple[float, float] | None) -> dict[str, Any]:
    delta = p.delta[idx]
    missed = p.market_r[idx][p.unfilled[idx]]
    n = len(delta)
    return {
        "n": n,
        "delta_r": _r(float(delta.mean())) if n else None,
        "delta_ci": [_r(ci[0]), _r(ci[1])] if ci else None,
        "missed_r": _r(float(missed.mean())) if len(missed) else None,
        "n_missed": len(missed),
        "flag": _flag(n, ci),
    }


def paired_refined_vs_market(outcomes: pd.DataFrame, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """ΔR of refined limits against the same signals at market (module docstring)."""
    pairs = _pairs(outcomes)
    return _paired_figures_of_groups(pairs, [(None, np.arange(len(pairs.delta)))], seed)[0]


def _rows_for(outcomes: pd.DataFrame, group_by: str) -> pd.DataFrame:
    if group_by == "entry_mode":
        return outcomes[outcomes["source"] == "alphapulse"]
    return outcomes[outcomes["entry_mode"] == ACTUAL]


def _keys(rows: pd.DataFrame, group_by: str) -> np.ndarray:
    if group_by.startswith(HEAD_PREFIX):
        head = group_by[len(HEAD_PREFIX) :]
        keys = rows["heads"].map(lambda h: h.get(head) if isinstance(h, dict) else None)
    else:
        keys = rows[group_by]
    return keys.astype(object).where(keys.notna(), None).to_numpy()


def evaluate(
    outcomes: pd.DataFrame, group_by: str = "entry_strategy", seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """``{"groups": [...], "paired": {...}}`` (the §16 shape) from outcome rows."""
    check_group_by(group_by)
    rows = _in_exit_order(_rows_for(outcomes, group_by))
    arrays = _Rows.of(rows)
    groups = _figures_of_groups(arrays, _groups_of(_keys(rows, group_by)), seed)
    return {
        "group_by": group_by,
        "groups": groups,
        "paired": paired_refined_vs_market(outcomes, seed),
    }


def strategy_report(
    connection: Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
    symbol: str | None = None,
    group_by: str = "entry_strategy",
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """:func:`evaluate` over the stored outcomes of signals in ``[since, until)``."""
    check_group_by(group_by)
    modes = None if group_by == "entry_mode" else (ACTUAL, MARKET)
    key = "heads" if group_by.startswith(HEAD_PREFIX) else group_by
    # only the columns this grouping reads: a year is ~200,000 rows
    columns = list(dict.fromkeys([*_REPORT_COLUMNS, "source", key]))
    if group_by != "entry_mode" and key != "source":
        columns.remove("source")
    outcomes = load_outcomes(
        connection, since, until, source=source, symbol=symbol, entry_modes=modes,
        columns=columns,
    )  # fmt: skip
    report = evaluate(outcomes, group_by, seed)
    report["filters"] = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "source": source,
        "symbol": symbol,
    }
    return report


def daily_rows(
    outcomes: pd.DataFrame, days: list[datetime], computed_at: datetime, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """``strategy_performance`` rows: per UTC day of signal time, per grouping of
    :data:`DAILY_GROUPINGS` and the paired comparison (``group_by = 'paired'``)."""
    wanted = set(_day_number(pd.Series(days, dtype=object)).tolist())
    rows: list[dict[str, Any]] = []
    if outcomes.empty:
        return rows
    in_exit_order = _in_exit_order(outcomes)  # once: each grouping's rows keep the order
    for group_by in DAILY_GROUPINGS:
        frame = _rows_for(in_exit_order, group_by)
        day_groups = [
            (day, key, idx)
            for day, key, idx in _groups_by_day(
                _day_number(frame["signal_time"]), _keys(frame, group_by)
            )
            if day in wanted
        ]
        figures = _figures_of_groups(
            _Rows.of(frame), [(key, idx) for _, key, idx in day_groups], seed
        )
        for (day, _, _), g in zip(day_groups, figures, strict=True):
            ci = g.pop("expectancy_ci") or [None, None]
            rows.append(
                {**g, "day": _day_start(day), "group_by": group_by,
                 "key": g["key"] or "(none)", "expectancy_ci_lo": ci[0],
                 "expectancy_ci_hi": ci[1], "missed_r": None, "computed_at": computed_at}
            )  # fmt: skip
    pairs = _pairs(outcomes)
    pair_days = _day_number(pairs.signal_time)
    paired_groups = [
        (day, idx)
        for day, _, idx in _groups_by_day(pair_days, np.full(len(pair_days), None, object))
        if day in wanted
    ]
    for (day, _), p in zip(
        paired_groups, _paired_figures_of_groups(pairs, paired_groups, seed), strict=True
    ):
        ci = p["delta_ci"] or [None, None]
        rows.append(
            {"day": _day_start(day), "group_by": "paired",
             "key": "refined_vs_market", "n": p["n"], "n_signals": p["n"], "fill_rate": None,
             "win_rate": None, "profitable_rate": None, "expectancy_r": p["delta_r"],
             "expectancy_ci_lo": ci[0],
             "expectancy_ci_hi": ci[1], "profit_factor": None, "max_drawdown_r": None,
             "mean_mfe_r": None, "mean_mae_r": None, "entry_improvement_bps": None,
             "missed_r": p["missed_r"], "flag": p["flag"], "computed_at": computed_at}
        )  # fmt: skip
    return rows


_DAY_NS = 86_400 * 10**9


def _day_number(times: pd.Series) -> np.ndarray:
    """UTC day numbers (days since the epoch) of aware timestamps."""
    ns = pd.to_datetime(times, utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    return ns // _DAY_NS


def _day_start(day: int) -> datetime:
    return pd.Timestamp(int(day) * _DAY_NS, tz="UTC").to_pydatetime()


def write_daily_rows(
    engine: Engine, rows: list[dict[str, Any]], since: datetime, until: datetime
) -> int:
    """Replace the window's days with ``rows`` in one transaction (idempotent)."""
    t = strategy_performance.c
    with engine.begin() as connection:
        connection.execute(delete(strategy_performance).where(t.day >= since, t.day < until))
        insert_rows(connection, strategy_performance, rows)
    return len(rows)


def outcome_metrics(connection: Connection) -> dict[str, Any]:
    """The outcome figures ``GET /metrics/mtf`` adds: ``outcome_fill_rate`` (refined limits
    of MTF signals that filled, read from candles, fraction) with its N, and the paired
    refined-vs-market ΔR (``paired_delta_r``, ``paired_delta_ci``, ``paired_n``,
    ``paired_missed_r``)."""
    columns = [
        "signal_id", "entry_mode", "signal_time", "entry_strategy", "status", "r_multiple",
        "filled_at",
    ]  # fmt: skip
    outcomes = load_outcomes(
        connection, source="alphapulse", entry_modes=(ACTUAL, MARKET), columns=columns
    )
    refined = outcomes[
        (outcomes["entry_mode"] == ACTUAL) & (outcomes["entry_strategy"] != MARKET_ENTRY)
    ]
    filled = int(refined["filled_at"].notna().sum())
    decided = filled + int((refined["status"] == "NOT_FILLED").sum())
    paired = paired_refined_vs_market(outcomes)
    return {
        "outcome_fill_rate": _r(filled / decided) if decided else None,
        "outcome_fill_rate_n": decided,
        "paired_delta_r": paired["delta_r"],
        "paired_delta_ci": paired["delta_ci"],
        "paired_n": paired["n"],
        "paired_missed_r": paired["missed_r"],
        "paired_flag": paired["flag"],
    }
