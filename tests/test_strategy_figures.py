"""The figures of one group, hand-checked: a win is the first target hit before the stop
(SPEC §17), not R > 0; the share with R > 0 is kept beside it."""

from __future__ import annotations

import pandas as pd
import pytest

from alphapulse_dagster.analytics.strategy_performance import group_figures


def test_a_break_even_after_the_first_target_is_a_win_but_not_profitable() -> None:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    rows = pd.DataFrame(
        {
            "signal_id": ["a", "b", "c", "d"],
            "status": ["CLOSED"] * 4,
            "filled_at": [t] * 4,
            "exit_at": [t + pd.Timedelta(hours=h) for h in (1, 2, 3, 4)],
            # TARGET +2 R, BREAKEVEN after TP1 0 R, STOP -1 R, TIME +0.5 R without TP1
            "r_multiple": [2.0, 0.0, -1.0, 0.5],
            "first_target_hit": [True, True, False, False],
            "mfe_r": [2.2, 1.4, 0.3, 0.9],
            "mae_r": [0.1, 0.2, 1.0, 0.4],
            "entry_improvement_bps": [10.0, 20.0, 30.0, 40.0],
        }
    )
    g = group_figures(rows, "X")
    assert (g["n"], g["win_rate"], g["profitable_rate"]) == (4, 0.5, 0.5)
    rows.loc[1, "r_multiple"] = 0.0
    rows.loc[3, "first_target_hit"] = True  # TP1 hit, then a time exit
    g = group_figures(rows, "X")
    assert (g["win_rate"], g["profitable_rate"]) == (0.75, 0.5)
    assert g["expectancy_r"] == pytest.approx(1.5 / 4)
    assert g["profit_factor"] == pytest.approx(2.5) and g["flag"] == "small_sample"
