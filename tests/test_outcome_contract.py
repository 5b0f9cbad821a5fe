"""The ``signal_outcomes`` contract (schemas/signal_outcomes.py) catches each defect it
names, row by row, and passes sound rows: a CLOSED trade (LONG 100 -> 103, stop 98:
R 1.5), a NOT_FILLED limit and an OPEN trade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.contracts import contract_check
from schemas.signal_outcomes import SignalOutcomeFrame

T = pd.Timestamp("2024-01-01 10:00", tz="UTC")
NaT = pd.NaT


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "signal_id": ["a", "b", "c"],
            "entry_mode": ["actual", "market", "actual"],
            "direction": ["LONG", "SHORT", "LONG"],
            "status": ["CLOSED", "NOT_FILLED", "OPEN"],
            "entry_price": [100.0, 50.0, 10.0],
            "stop_loss": [98.0, 51.0, 9.0],
            "filled_at": pd.Series([T, NaT, T], dtype="datetime64[ns, UTC]"),
            "exit_at": pd.Series(
                [T + pd.Timedelta(hours=3), NaT, NaT], dtype="datetime64[ns, UTC]"
            ),
            "exit_price": [103.0, np.nan, np.nan],
            "r_multiple": [1.5, np.nan, np.nan],
            "mfe_r": [2.0, 0.0, 0.5],
            "mae_r": [0.5, 0.0, 0.2],
            "mfe_price": [4.0, 0.0, 0.5],
            "mae_price": [1.0, 0.0, 0.2],
            "bars_held": [3, 0, 2],
        }
    )


def _failing(frame: pd.DataFrame) -> tuple[bool, int, dict]:
    result = contract_check(SignalOutcomeFrame, frame, asset_key="x", check_name="contract")
    meta = {k: v.value if hasattr(v, "value") else v for k, v in result.metadata.items()}
    return result.passed, meta["failing_rows"], meta.get("failures_by_check", {})


def test_sound_rows_pass() -> None:
    assert _failing(_rows()) == (True, 0, {})


@pytest.mark.parametrize(
    ("row", "column", "value", "check"),
    [
        (0, "exit_at", T - pd.Timedelta(hours=1), "a CLOSED outcome"),  # exit before fill
        (0, "exit_at", NaT, "a CLOSED outcome"),  # closed without an exit
        (0, "r_multiple", np.nan, "a CLOSED outcome"),  # closed without R
        (0, "r_multiple", 1.4, "R = signed"),  # R not from the prices
        (1, "filled_at", T, "a NOT_FILLED outcome"),  # an unfilled limit with a fill
        (2, "mfe_r", -0.1, "greater_than_or_equal_to(0)"),
        (2, "mae_price", -1.0, "greater_than_or_equal_to(0)"),
        (1, "status", "EXPIRED", "isin(['OPEN', 'CLOSED', 'NOT_FILLED'])"),
        (2, "bars_held", -1, "greater_than_or_equal_to(0)"),
    ],
)
def test_each_defect_fails_its_check(row: int, column: str, value: object, check: str) -> None:
    frame = _rows()
    frame.loc[row, column] = value
    passed, failing, by_check = _failing(frame)
    assert (passed, failing) == (False, 1)
    assert any(check in name for name in by_check), by_check


def test_a_closed_row_with_every_value_missing_still_fails() -> None:
    """A CLOSED row with no fill, exit, prices nor R fails the completeness and R checks
    (they decide missing values themselves; pandera does not excuse the row)."""
    frame = _rows()
    for column in ("filled_at", "exit_at"):
        frame.loc[0, column] = NaT
    for column in ("entry_price", "stop_loss", "exit_price", "r_multiple"):
        frame.loc[0, column] = np.nan
    passed, failing, by_check = _failing(frame)
    assert (passed, failing) == (False, 1)
    assert any(n.startswith("a CLOSED outcome") for n in by_check)
    assert any(n.startswith("R = signed") for n in by_check)
