"""The trading session of a moment, by UTC hour (the same buckets the indicator uses).

ASIA 00:00–07:00, LONDON 07:00–12:00, NEW_YORK 12:00–21:00, SYDNEY 21:00–24:00 (UTC).
Crypto trades around the clock; the session says which book is most active.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from alphapulse_dagster.clock import as_utc

_SESSIONS: tuple[tuple[int, str], ...] = (
    (7, "ASIA"),
    (12, "LONDON"),
    (21, "NEW_YORK"),
    (24, "SYDNEY"),
)


def market_session(moment: datetime) -> str:
    hour = as_utc(moment).hour
    for end_hour, name in _SESSIONS:
        if hour < end_hour:
            return name
    raise AssertionError("unreachable: hour < 24")


def market_sessions(moments: pd.Series) -> np.ndarray:
    """:func:`market_session` of many moments at once (by their UTC hour)."""
    by_hour = np.array([market_session(datetime(2000, 1, 1, h, tzinfo=UTC)) for h in range(24)])
    hours = pd.to_datetime(moments, utc=True).dt.hour.to_numpy()
    return by_hour.astype(object)[hours]  # type: ignore[no-any-return]
