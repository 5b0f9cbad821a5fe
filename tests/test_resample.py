"""UTC-aligned resampling and the last-closed-bar lookup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphapulse_dagster.market.bars import last_closed_bar, panel_from_frame
from alphapulse_dagster.market.resample import resample_ohlcv, timeframe_to_timedelta


def hourly(times: list[str], symbol: str = "X") -> pd.DataFrame:
    n = len(times)
    close = np.arange(1.0, n + 1)
    return pd.DataFrame({
        "symbol": symbol, "open_time": pd.to_datetime(times, utc=True),
        "open": close - 0.5, "high": close + 1, "low": close - 1, "close": close,
        "volume": np.full(n, 10.0),
    })  # fmt: skip


def test_resample_aggregates_by_utc_open_time_without_filling_gaps() -> None:
    # 01:00..05:00 then a gap until 09:00 (4h bars open at 00, 04, 08 UTC).
    df = hourly(["2024-01-01T01:00Z", "2024-01-01T02:00Z", "2024-01-01T03:00Z",
                 "2024-01-01T04:00Z", "2024-01-01T05:00Z", "2024-01-01T09:00Z"])  # fmt: skip
    out = resample_ohlcv(df, "4h", source_timeframe="1h")
    assert out["open_time"].dt.hour.tolist() == [0, 4, 8]
    first = out.iloc[0]  # bars 01, 02, 03: closes 1, 2, 3
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        0.5,
        4.0,
        0.0,
        3.0,
        30.0,
    )
    assert out["n_bars"].tolist() == [3, 2, 1]
    assert out["complete"].tolist() == [False, False, False]
    assert out["expected_bars"].iloc[0] == 4


def test_resample_daily_and_weekly_alignment_per_symbol() -> None:
    a = hourly([f"2024-01-0{d}T{h:02d}:00Z" for d in (1, 2) for h in range(24)], "A")
    b = hourly(["2024-01-01T23:00Z"], "B")
    out = resample_ohlcv(pd.concat([a, b]), "1d", source_timeframe="1h")
    assert out[["symbol", "n_bars", "complete"]].values.tolist() == [
        ["A", 24, True], ["A", 24, True], ["B", 1, False]
    ]  # fmt: skip
    weekly = resample_ohlcv(a, "1w")
    assert weekly["open_time"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")  # a Monday


def test_timeframes() -> None:
    assert timeframe_to_timedelta("15m") == pd.Timedelta(minutes=15)
    assert timeframe_to_timedelta("4h") == pd.Timedelta(hours=4)
    with pytest.raises(ValueError):
        timeframe_to_timedelta("1M")


def test_last_closed_bar() -> None:
    df = pd.concat([
        hourly(["2024-01-01T00:00Z", "2024-01-01T01:00Z", "2024-01-01T03:00Z"], "A"),
        hourly(["2024-01-01T01:00Z"], "B"),
    ])  # fmt: skip
    panel = panel_from_frame(df, "1h", ["A", "B", "C"])
    t = [pd.Timestamp(x, tz="UTC").value for x in
         ("2024-01-01T00:59", "2024-01-01T01:00", "2024-01-01T03:59", "2024-01-01T04:00",
          "2024-01-01T02:00", "2024-01-01T01:59", "2024-01-02")]  # fmt: skip
    got = last_closed_bar(panel, [0, 0, 0, 0, 1, 1, 2], t)
    # A closes at 01:00, 02:00, 04:00; B's only bar closes at 02:00; C has no bars.
    assert got.tolist() == [-1, 0, 1, 2, 0, -1, -1]
    assert panel.n_bars.tolist() == [3, 1, 0]
    with pytest.raises(ValueError, match="duplicate"):
        panel_from_frame(pd.concat([df, df.iloc[:1]]), "1h")
