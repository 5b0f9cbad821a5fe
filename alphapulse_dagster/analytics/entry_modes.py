"""The trades an outcome is computed for: one row per (signal, entry mode).

- ``actual`` — the signal as stored (an MTF signal: its own entry, a limit unless it is a
  ``MARKET_ENTRY``) or as reported (a TradingView signal: filled at its ENTRY event's time
  and price).
- ``market`` and each *valid* refinement candidate of an MTF signal (from its analysis in
  ``mtf_entry_analysis_history``): counterfactuals. Each is entered at its own price
  (market: the signal's close, filled at once; a candidate: a limit at its level with the
  signal's own expiry) with the actual entry's stop and target distances in ATR, so R
  means the same thing in every mode and entry methods compare on the same signals.

Candidate modes are named like ``entry_strategy`` (``FIBONACCI_618``, ``ORDER_BLOCK``),
EMA pull-backs with their period (``EMA_PULLBACK_21``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from alphapulse_dagster.market.timeframes import normalise_interval
from alphapulse_dagster.market.trading_session import market_sessions

ACTUAL, MARKET = "actual", "market"
NOT_FILLED = "NOT_FILLED"
MARKET_ENTRY = "MARKET_ENTRY"

PLAN_COLUMNS = [
    "signal_id", "entry_mode", "source", "symbol", "direction", "timeframe", "signal_time",
    "signal_timeframe", "entry_strategy", "entry_pattern", "htf_agreement", "session",
    "consensus_size", "heads", "placed_at", "expires_at", "at_market", "market_price",
    "entry_price", "stop_loss", "first_target", "last_target", "reported_status",
    "reported_exit_price", "reported_exit_reason",
]  # fmt: skip


def candidate_mode(strategy: str, pattern: str) -> str:
    """``EMA_PULLBACK`` + ``EMA_21_PULLBACK`` -> ``EMA_PULLBACK_21``; others unchanged."""
    if strategy == "EMA_PULLBACK":
        return f"EMA_PULLBACK_{pattern.split('_')[1]}"
    return strategy


def _head_votes(analysis: Any) -> tuple[int | None, dict[str, str] | None]:
    heads = (analysis or {}).get("heads") if isinstance(analysis, dict) else None
    if not heads:
        return None, None
    votes = {
        name: "AGREE"
        if h.get("agrees")
        else ("NONE" if h.get("direction") == "NONE" else "DISAGREE")
        for name, h in heads.items()
    }
    return sum(v == "AGREE" for v in votes.values()), votes


def mtf_plan(signals: pd.DataFrame) -> pd.DataFrame:
    """The actual, market and candidate trades of MTF signals. ``signals``: rows of
    ``ai_signals_mtf`` with the analysis of ``mtf_entry_analysis_history`` as ``analysis``."""
    if signals.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    s = signals.reset_index(drop=True)
    sign = np.where(s["direction"].to_numpy() == "LONG", 1.0, -1.0)
    entry = s["entry_price"].to_numpy(np.float64)
    atr = s["atr"].to_numpy(np.float64)
    targets = s["take_profits"].tolist()
    first_t = np.array([float(t[0]) for t in targets])
    last_t = np.array([float(t[-1]) for t in targets])
    # distances of the actual trade in ATR: the counterfactuals reuse them
    d_stop = np.abs(entry - s["stop_loss"].to_numpy(np.float64)) / atr
    d_first, d_last = sign * (first_t - entry) / atr, sign * (last_t - entry) / atr
    votes = [_head_votes(a) for a in s["model_heads_analysis"].tolist()]
    base = pd.DataFrame(
        {
            "signal_id": s["signal_id"],
            "source": "alphapulse",
            "symbol": s["symbol"],
            "direction": s["direction"],
            "timeframe": s["entry_timeframe"],
            "signal_time": s["timestamp"],
            "signal_timeframe": s["signal_timeframe"],
            "entry_strategy": s["entry_strategy"],
            "entry_pattern": s["entry_pattern"],
            "htf_agreement": s["htf_agreement"],
            "session": market_sessions(s["timestamp"]),
            "consensus_size": [v[0] for v in votes],
            "heads": [v[1] for v in votes],
            "placed_at": s["timestamp"],
            "expires_at": s["expires_at"],
            "market_price": s["market_price"].to_numpy(np.float64),
            "reported_status": None,
            "reported_exit_price": np.nan,
            "reported_exit_reason": None,
        }
    )

    def at(rows: np.ndarray, mode: list[str] | str, level: np.ndarray, market: bool | np.ndarray):
        part = base.iloc[rows].reset_index(drop=True)
        sg, a = sign[rows], atr[rows]
        part["entry_mode"] = mode
        part["at_market"] = market
        part["entry_price"] = level
        part["stop_loss"] = level - sg * d_stop[rows] * a
        part["first_target"] = level + sg * d_first[rows] * a
        part["last_target"] = level + sg * d_last[rows] * a
        return part

    every = np.arange(len(s))
    actual = at(every, ACTUAL, entry, (s["entry_strategy"] == MARKET_ENTRY).to_numpy())
    actual["stop_loss"] = s["stop_loss"].to_numpy(np.float64)  # exactly as stored
    actual["first_target"], actual["last_target"] = first_t, last_t
    market = at(every, MARKET, s["market_price"].to_numpy(np.float64), True)
    rows, modes, levels = [], [], []
    for i, analysis in enumerate(s["analysis"].tolist()):
        for c in (analysis or {}).get("candidates", []) if isinstance(analysis, dict) else []:
            if c.get("valid") and c.get("level") is not None:
                rows.append(i)
                modes.append(candidate_mode(str(c["strategy"]), str(c.get("pattern", ""))))
                levels.append(float(c["level"]))
    parts = [actual, market]
    if rows:
        parts.append(at(np.array(rows), modes, np.array(levels), False))
    plan = pd.concat(parts, ignore_index=True)
    return plan.drop_duplicates(["signal_id", "entry_mode"])[PLAN_COLUMNS]


def _timeframe(value: Any) -> str | None:
    try:
        return normalise_interval(str(value)) if value is not None else None
    except ValueError:  # an interval we cannot read: no bars to read the outcome on
        return None


def tradingview_plan(registry: pd.DataFrame) -> pd.DataFrame:
    """The actual trade of TradingView signals (rows of the ``signals`` registry): filled
    at the ENTRY event (``confirmed_at``) at ``entry_price``; the reported EXIT is kept.
    A signal cancelled before any entry is ``NOT_FILLED`` as reported; one without entry,
    stop and targets yet has no outcome."""
    if registry.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    r = registry.reset_index(drop=True)
    r["timeframe"] = r["timeframe"].map(_timeframe)
    targets = r["targets"].map(lambda t: t if isinstance(t, list) and len(t) else None)
    complete = (
        r["confirmed_at"].notna()
        & r["entry_price"].notna()
        & r["stop_loss"].notna()
        & targets.notna()
        & r["direction"].isin(["LONG", "SHORT"])
        & r["timeframe"].notna()
    )
    cancelled = r["confirmed_at"].isna() & (r["status"] == "CANCELLED") & r["timeframe"].notna()
    r = r[complete | cancelled].reset_index(drop=True)
    targets = targets[complete | cancelled].reset_index(drop=True)
    filled = r["confirmed_at"].notna()
    signal_time = r["signal_time"].where(r["signal_time"].notna(), r["created_at"])
    signal_time = signal_time.where(signal_time.notna(), r["confirmed_at"])
    first_t = targets.map(lambda t: float(t[0]) if t else np.nan)
    last_t = targets.map(lambda t: float(t[-1]) if t else np.nan)
    plan = pd.DataFrame(
        {
            "signal_id": r["signal_id"],
            "entry_mode": ACTUAL,
            "source": r["source"],
            "symbol": r["symbol"],
            "direction": r["direction"].fillna("LONG"),
            "timeframe": r["timeframe"],
            "signal_time": signal_time,
            "signal_timeframe": r["timeframe"],
            "entry_strategy": None,
            "entry_pattern": None,
            "htf_agreement": None,
            "session": r["session"],
            "consensus_size": None,
            "heads": None,
            "placed_at": r["confirmed_at"],
            "expires_at": r["confirmed_at"],
            "at_market": True,
            "market_price": r["entry_price"],
            "entry_price": r["entry_price"],
            "stop_loss": r["stop_loss"],
            "first_target": first_t,
            "last_target": last_t,
            "reported_status": filled.map({True: None, False: NOT_FILLED}),
            "reported_exit_price": r["exit_price"],
            "reported_exit_reason": r["exit_reason"],
        }
    )
    return plan[PLAN_COLUMNS]
