"""Hand-built candle series for the refinement and head tests (prices in price units)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def frame(
    opens: list[float],
    highs: list[float],
    lows: list[float],
    closes: list[float],
    volumes: list[float] | None = None,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    n = len(closes)
    return pd.DataFrame({
        "open_time": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
        "open": opens, "high": highs, "low": lows, "close": closes,
        "volume": volumes if volumes is not None else [100.0] * n,
    })  # fmt: skip


def trend_bars(
    first_close: float, step: float, n: int, body: float = 0.25, half_range: float = 1.0
) -> tuple[list[float], ...]:
    """Closes first_close + step*i; bullish bodies when step > 0, bearish when < 0;
    high/low = close +/- half_range, so the true range is 2*half_range while |step| <= 1."""
    closes = [first_close + step * i for i in range(n)]
    sign = 1.0 if step > 0 else -1.0
    opens = [c - sign * body for c in closes]
    highs = [c + half_range for c in closes]
    lows = [c - half_range for c in closes]
    return opens, highs, lows, closes


def mirror(df: pd.DataFrame, pivot: float) -> pd.DataFrame:
    """Price-mirror a series around ``pivot`` (p -> pivot - p): LONG setups become SHORT."""
    out = df.copy()
    out["open"], out["close"] = pivot - df["open"], pivot - df["close"]
    out["high"], out["low"] = pivot - df["low"], pivot - df["high"]
    return out


def concat(*parts: tuple[list[float], ...]) -> pd.DataFrame:
    cols = [np.concatenate([p[k] for p in parts]).tolist() for k in range(4)]
    return frame(*cols)
