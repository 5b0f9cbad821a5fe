"""The candle contract (SPEC §4): OHLC consistency, non-negative volume, no NaN prices,
strictly increasing unique ``open_time`` per symbol (one timeframe per frame)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series


class CandleFrame(pa.DataFrameModel):
    symbol: Series[str] = pa.Field(nullable=False)
    open_time: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=False, dtype_kwargs={"unit": "ns", "tz": "UTC"}, coerce=True
    )
    open: Series[float] = pa.Field(nullable=False, gt=0)
    high: Series[float] = pa.Field(nullable=False, gt=0)
    low: Series[float] = pa.Field(nullable=False, gt=0)
    close: Series[float] = pa.Field(nullable=False, gt=0)
    volume: Series[float] = pa.Field(nullable=False, ge=0)

    @pa.dataframe_check(error="high >= max(open, close)")
    def high_is_highest(cls, df: pd.DataFrame) -> pd.Series:
        return df["high"] >= df[["open", "close"]].max(axis=1)

    @pa.dataframe_check(error="low <= min(open, close)")
    def low_is_lowest(cls, df: pd.DataFrame) -> pd.Series:
        return df["low"] <= df[["open", "close"]].min(axis=1)

    @pa.dataframe_check(error="open_time unique and strictly increasing per symbol")
    def times_strictly_increase(cls, df: pd.DataFrame) -> pd.Series:
        step = df.groupby("symbol", sort=False)["open_time"].diff()
        return step.isna() | (step > pd.Timedelta(0))

    class Config:
        strict = False
        coerce = True
