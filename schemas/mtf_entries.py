"""Contracts of the MTF entries (SPEC §6 invariants) and of their data sufficiency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

FALLBACK_PATTERNS = ("INSUFFICIENT_DATA", "REFINEMENT_ERROR")


def _targets(df: pd.DataFrame, reduce: str) -> pd.Series:
    return df["take_profits"].map(
        lambda t: getattr(np, reduce)(t) if t is not None and len(t) else np.nan
    )


class MtfEntryFrame(pa.DataFrameModel):
    """Always: LONG ⇒ stop < entry < every target; SHORT mirrored; every price finite and
    positive; R:R positive; confidences in [0, 1]."""

    symbol: Series[str]
    direction: Series[str] = pa.Field(isin=["LONG", "SHORT"])
    market_price: Series[float] = pa.Field(gt=0)
    entry_price: Series[float] = pa.Field(gt=0)
    stop_loss: Series[float] = pa.Field(gt=0)
    atr: Series[float] = pa.Field(gt=0)
    risk_reward_ratio: Series[float] = pa.Field(gt=0)
    signal_confidence: Series[float] = pa.Field(ge=0, le=1)
    entry_confidence: Series[float] = pa.Field(ge=0, le=1)

    @pa.dataframe_check(error="prices finite")
    def finite(cls, df: pd.DataFrame) -> pd.Series:
        cols = ["market_price", "entry_price", "stop_loss", "atr", "risk_reward_ratio"]
        return pd.Series(np.isfinite(df[cols].to_numpy(dtype=float)).all(axis=1), index=df.index)

    @pa.dataframe_check(error="LONG: stop < entry < every target; SHORT mirrored")
    def stop_entry_targets_ordered(cls, df: pd.DataFrame) -> pd.Series:
        lowest, highest = _targets(df, "min"), _targets(df, "max")
        long_ok = (df["stop_loss"] < df["entry_price"]) & (df["entry_price"] < lowest)
        short_ok = (df["stop_loss"] > df["entry_price"]) & (df["entry_price"] > highest)
        return (df["direction"] == "LONG") & long_ok | (df["direction"] == "SHORT") & short_ok

    class Config:
        coerce = True


def entry_sufficiency_schema(max_fallback_share: float) -> pa.DataFrameSchema:
    """The share of fallback entries (too few entry candles, refinement errors) is within
    ``max_fallback_share``."""
    return pa.DataFrameSchema(
        {"entry_pattern": pa.Column(str)},
        checks=pa.Check(
            lambda df: df["entry_pattern"].isin(FALLBACK_PATTERNS).mean() <= max_fallback_share,
            error=f"fallback share <= {max_fallback_share}",
        ),
    )
