"""One instrument's bars of one timeframe as flat numpy arrays (times in epoch ns), the
shape the vectorised trade rule reads. Bars are labelled by their OPEN time (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BarSeries:
    """One instrument's bars of one timeframe, oldest first (open times in ns)."""

    open_ns: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    bar_ns: int

    @property
    def close_ns(self) -> IntArray:
        return self.open_ns + self.bar_ns

    def __len__(self) -> int:
        return len(self.open_ns)


def to_ns(values: object) -> IntArray:
    """UTC datetimes (a scalar, a list, a Series) as int64 epoch nanoseconds."""
    listed = values if isinstance(values, pd.Series | list | tuple | np.ndarray) else [values]
    stamps = pd.to_datetime(pd.Series(listed), utc=True).dt.as_unit("ns")
    return stamps.astype("int64").to_numpy()


def bar_series(frame: pd.DataFrame, bar_length: timedelta) -> BarSeries:
    """One instrument's bars (``open_time, open, high, low, close``, ascending)."""
    return BarSeries(
        open_ns=to_ns(frame["open_time"]) if len(frame) else np.zeros(0, np.int64),
        open=frame["open"].to_numpy(np.float64),
        high=frame["high"].to_numpy(np.float64),
        low=frame["low"].to_numpy(np.float64),
        close=frame["close"].to_numpy(np.float64),
        bar_ns=int(pd.Timedelta(bar_length).value),
    )
