"""Fill status of a refined entry (a limit order) on later entry-timeframe bars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphapulse_dagster.signals.entry_candidates import direction_sign


@dataclass(frozen=True)
class FillStatus:
    """``CONFIRMED`` (with ``fill_time``: open time of the entry-TF bar that traded through
    the limit), ``EXPIRED`` (window passed unfilled) or ``PENDING`` (window not over)."""

    status: str
    fill_time: pd.Timestamp | None
    bars_checked: int


def entry_fill_status(
    entry_price: float,
    direction: str | int,
    later_bars: pd.DataFrame,
    entry_valid_bars: int,
) -> FillStatus:
    """Did the limit order fill? ``later_bars``: entry-TF bars opening at or after the
    signal time, oldest first (open_time, high, low). LONG fills when a bar's low <= entry,
    SHORT when its high >= entry, within the first ``entry_valid_bars`` bars."""
    sign = direction_sign(direction)
    window = later_bars.iloc[:entry_valid_bars]
    touched = (window["low"] <= entry_price) if sign > 0 else (window["high"] >= entry_price)
    hits = np.flatnonzero(touched.to_numpy())
    if len(hits):
        when = pd.Timestamp(window["open_time"].iloc[hits[0]])
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        return FillStatus("CONFIRMED", when, int(hits[0]) + 1)
    if len(window) >= entry_valid_bars:
        return FillStatus("EXPIRED", None, len(window))
    return FillStatus("PENDING", None, len(window))
