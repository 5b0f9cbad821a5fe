"""What happened to a refined entry after its signal bar: the limit fill, then the exit.

A refined entry is a limit order placed at the signal bar's close time ``t``:

- **Fill**: CONFIRMED at the first entry-timeframe bar opening at or after ``t`` whose range
  trades through the entry (LONG: low ≤ entry; SHORT: high ≥ entry) within
  ``entry_valid_bars`` bars; none ⇒ CANCELLED with reason EXPIRED once those bars have
  closed; otherwise still PENDING.
- **Exit** (after the fill, from the fill bar on): the stop ⇒ CLOSED/STOP; the last target
  ⇒ CLOSED/TARGET; once the first target has traded the stop moves to the entry, and a
  later touch of it ⇒ CLOSED/BREAKEVEN. When one bar touches both stop and a target, the
  stop is assumed first (the conservative reading of an OHLC bar).

Only bars that have closed by ``as_of`` are looked at, so the outcome as of a time never
depends on later data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Outcome:
    status: str  # PENDING | CONFIRMED | CLOSED | CANCELLED
    reason: str | None = None  # EXPIRED | TARGET | STOP | BREAKEVEN
    filled_at: datetime | None = None  # open time of the fill bar
    closed_at: datetime | None = None  # close time of the exit bar
    exit_price: float | None = None


def trade_outcome(
    direction: str,
    entry: float,
    stop: float,
    targets: list[float],
    placed_at: datetime,
    bars: pd.DataFrame,
    bar_length: pd.Timedelta,
    entry_valid_bars: int,
    as_of: datetime,
) -> Outcome:
    """``bars``: one symbol's entry-timeframe bars (``open_time, high, low``), ascending."""
    closes = bars["open_time"] + bar_length
    later = bars[(bars["open_time"] >= pd.Timestamp(placed_at)) & (closes <= pd.Timestamp(as_of))]
    later_closes = later["open_time"] + bar_length
    sign = 1.0 if direction == "LONG" else -1.0
    high, low = later["high"].to_numpy(), later["low"].to_numpy()
    # prices in "favourable" units: LONG as is, SHORT negated, so one rule serves both
    fav_high, fav_low = (high, low) if sign > 0 else (-low, -high)
    window = min(entry_valid_bars, len(later))
    touched = np.flatnonzero(fav_low[:window] <= sign * entry)
    if touched.size == 0:
        if len(later) >= entry_valid_bars:
            return Outcome("CANCELLED", "EXPIRED")
        return Outcome("PENDING")
    fill = int(touched[0])
    filled_at = later["open_time"].iloc[fill].to_pydatetime()
    current_stop = sign * stop
    first_target, last_target = sign * targets[0], sign * targets[-1]
    for i in range(fill, len(later)):  # short loop per signal: a handful of signals per run
        if fav_low[i] <= current_stop:
            reason = "STOP" if current_stop < sign * entry else "BREAKEVEN"
            closed_at = later_closes.iloc[i].to_pydatetime()
            return Outcome("CLOSED", reason, filled_at, closed_at, float(sign * current_stop))
        if fav_high[i] >= last_target:
            closed_at = later_closes.iloc[i].to_pydatetime()
            return Outcome("CLOSED", "TARGET", filled_at, closed_at, float(targets[-1]))
        if fav_high[i] >= first_target:
            current_stop = max(current_stop, sign * entry)
    return Outcome("CONFIRMED", None, filled_at)
