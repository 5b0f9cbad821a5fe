"""The MTF seed's claims, measured on the stored history (SPEC §17, issue 17 item 6).

The seed promised: entry price 20–30 % better, win rate +10–15 %, R:R 1.33–3.33 (vs 1:1),
entry refinement success > 60 %, signals for 60–80 % of symbols. Each is measured here
from ``ai_signals_mtf`` and ``signal_outcomes`` (the counterfactual ``market`` entry of the
same signals is the comparison), with its N and, where it is a mean, a bootstrap interval.
A win is a trade that hit its first target before its stop (``first_target_hit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from alphapulse_dagster.analytics.bootstrap import bootstrap_mean_ci
from alphapulse_dagster.analytics.entry_modes import ACTUAL, MARKET, MARKET_ENTRY
from alphapulse_dagster.analytics.outcome_store import load_outcomes
from alphapulse_dagster.analytics.strategy_performance import paired_refined_vs_market
from alphapulse_dagster.db.tables import ai_signals_mtf


def _pct(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(100.0 * float(x), 2)


def _ci_pct(values: np.ndarray) -> list[float | None] | None:
    ci = bootstrap_mean_ci(values)
    return [_pct(ci[0]), _pct(ci[1])] if ci else None


def measure_claims(connection: Connection, symbols_enabled: list[str]) -> dict[str, Any]:
    """Every claim with what was measured, N and a plain verdict."""
    s = ai_signals_mtf.c
    stored = pd.DataFrame(
        connection.execute(
            select(
                s.signal_id,
                s.symbol,
                s.entry_strategy,
                s.risk_reward_ratio,
                s.targets_r,
                s.entry_improvement_bps,
                s.market_price,
                s.entry_price,
                s.stop_loss,
            )  # fmt: skip
        ).all(),
        columns=[
            "signal_id",
            "symbol",
            "entry_strategy",
            "risk_reward_ratio",
            "targets_r",
            "entry_improvement_bps",
            "market_price",
            "entry_price",
            "stop_loss",
        ],  # fmt: skip
    )
    outcomes = load_outcomes(connection, source="alphapulse", entry_modes=(ACTUAL, MARKET))
    refined = stored[stored["entry_strategy"] != MARKET_ENTRY]
    n, n_refined = len(stored), len(refined)

    # 1. entry price: improvement over the close at the signal, in bps and in R
    bps = refined["entry_improvement_bps"].to_numpy(float)
    risk = (refined["entry_price"] - refined["stop_loss"]).abs().to_numpy(float)
    in_risk = np.abs(refined["market_price"] - refined["entry_price"]).to_numpy(float) / risk
    entry: dict[str, Any] = {
        "claim": "entry price 20-30% better",
        "measured": {
            "mean_improvement_bps": round(float(bps.mean()), 2) if n_refined else None,
            "mean_improvement_pct_of_price": round(float(bps.mean()) / 100, 4)
            if n_refined
            else None,
            "mean_improvement_pct_of_risk": _pct(float(in_risk.mean())) if n_refined else None,
            "n": n_refined,
        },
    }
    pct_price = entry["measured"]["mean_improvement_pct_of_price"]
    entry["verdict"] = (
        "no refined entries" if pct_price is None
        else f"refined limits are {pct_price:.2f}% of price better than the close — far from 20-30%"
        if pct_price < 20 else "holds"
    )  # fmt: skip

    # 2. win rate: refined limit vs the same signals at market
    act = outcomes[
        (outcomes["entry_mode"] == ACTUAL) & (outcomes["entry_strategy"] != MARKET_ENTRY)
    ]
    mkt = outcomes[outcomes["entry_mode"] == MARKET].set_index("signal_id")
    closed_act = act[act["status"] == "CLOSED"]
    wins_filled = closed_act["first_target_hit"].to_numpy(float)  # a win: TP1 before the stop
    same_at_market = mkt.reindex(closed_act["signal_id"])
    same_at_market = same_at_market[same_at_market["status"] == "CLOSED"]
    wins_market_same = same_at_market["first_target_hit"].to_numpy(float)
    all_market = mkt.reindex(act["signal_id"])
    all_market = all_market[all_market["status"] == "CLOSED"]
    wins_market_all = all_market["first_target_hit"].to_numpy(float)
    win: dict[str, Any] = {
        "claim": "win rate +10-15% (refined vs market)",
        "measured": {
            "refined_filled_win_rate_pct": _pct(wins_filled.mean()) if len(wins_filled) else None,
            "refined_filled_ci_pct": _ci_pct(wins_filled),
            "n_refined_filled": len(wins_filled),
            "same_signals_at_market_win_rate_pct": _pct(wins_market_same.mean())
            if len(wins_market_same) else None,
            "all_refined_signals_at_market_win_rate_pct": _pct(wins_market_all.mean())
            if len(wins_market_all) else None,
            "n_all_refined_at_market": len(wins_market_all),
        },
    }  # fmt: skip
    m = win["measured"]
    if (
        m["refined_filled_win_rate_pct"] is None
        or m["all_refined_signals_at_market_win_rate_pct"] is None
    ):
        win["verdict"] = "not enough closed trades"
    else:
        diff = m["refined_filled_win_rate_pct"] - m["all_refined_signals_at_market_win_rate_pct"]
        ci = m["refined_filled_ci_pct"]
        win["verdict"] = (
            f"{diff:+.1f} points (filled limits vs all the refined signals at market); "
            f"the filled limits' interval {ci} " + (
                "holds the market rate: not shown"
                if ci and ci[0] <= m["all_refined_signals_at_market_win_rate_pct"] <= ci[1]
                else "excludes the market rate"
            )
        )  # fmt: skip

    # 3. R:R
    rr = stored["risk_reward_ratio"].to_numpy(float)
    last_r = np.array([float(t[-1]) for t in stored["targets_r"]]) if n else np.zeros(0)
    paired = paired_refined_vs_market(outcomes)
    closed_all = outcomes[(outcomes["entry_mode"] == ACTUAL) & (outcomes["status"] == "CLOSED")]
    realised = closed_all["r_multiple"].to_numpy(float)
    rr_claim: dict[str, Any] = {
        "claim": "R:R 1.33-3.33 vs 1:1",
        "measured": {
            "tp1_rr_min": round(float(rr.min()), 3) if n else None,
            "tp1_rr_median": round(float(np.median(rr)), 3) if n else None,
            "tp1_rr_max": round(float(rr.max()), 3) if n else None,
            "last_target_r_median": round(float(np.median(last_r)), 3) if n else None,
            "realised_mean_r": round(float(realised.mean()), 3) if len(realised) else None,
            "realised_ci_r": [round(v, 3) for v in bootstrap_mean_ci(realised) or ()] or None,
            "n_closed": len(realised),
        },
    }
    rr_claim["verdict"] = (
        "the planned R:R is set by configuration (take-profit / stop multipliers: 2/1.5 = 1.33 "
        "to 5/1.5 = 3.33), not earned; what counts is the realised R per trade above"
    )

    # 4. refinement success
    decided = act[act["filled_at"].notna() | (act["status"] == "NOT_FILLED")]
    filled = decided["filled_at"].notna().to_numpy(float)
    refinement: dict[str, Any] = {
        "claim": "entry refinement success > 60%",
        "measured": {
            "refined_share_pct": _pct(n_refined / n) if n else None,
            "n_signals": n,
            "refined_limits_filled_pct": _pct(filled.mean()) if len(filled) else None,
            "n_refined_decided": len(filled),
            "paired_delta_r": paired["delta_r"],
            "paired_delta_ci": paired["delta_ci"],
            "paired_n": paired["n"],
            "missed_r": paired["missed_r"],
        },
    }
    share = refinement["measured"]["refined_share_pct"]
    filled_pct = refinement["measured"]["refined_limits_filled_pct"]
    refinement["verdict"] = (
        "no signals" if share is None
        else f"{share:.1f}% of signals got a refined entry "
        f"({'holds' if share > 60 else 'below 60%'}); only {filled_pct}% of those limits filled"
    )  # fmt: skip

    # 5. symbols with signals
    with_signals = sorted(set(stored["symbol"]) & set(symbols_enabled))
    coverage: dict[str, Any] = {
        "claim": "signals for 60-80% of symbols",
        "measured": {
            "symbols_enabled": len(symbols_enabled),
            "symbols_with_signals": len(with_signals),
            "share_pct": _pct(len(with_signals) / len(symbols_enabled))
            if symbols_enabled
            else None,
        },
        "verdict": "over a whole history every enabled symbol fires; the seed's 60-80% was one "
        "run of 10 symbols, a figure of that run's bars, not a property",
    }
    return {"claims": [entry, win, rr_claim, refinement, coverage]}


def format_claims(report: dict[str, Any]) -> str:
    lines = []
    for c in report["claims"]:
        lines.append(f"* {c['claim']}")
        for k, v in c["measured"].items():
            lines.append(f"    {k}: {v}")
        lines.append(f"    => {c['verdict']}")
    return "\n".join(lines)
