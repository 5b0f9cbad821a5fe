"""Indicators against TA-Lib (the oracle), hand-computed cases and no-look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse_dagster.market import indicators as ind
from alphapulse_dagster.market.swings import forward_fill_last, swing_pivots
from tests.sample_data import SAMPLE_DIR

DATA = SAMPLE_DIR
SAMPLES = ["BTCUSD_1h.csv", "EURUSD_1h.csv"]


def _load(name: str) -> dict[str, np.ndarray]:
    df = pd.read_csv(DATA / name)
    return {c: df[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")}


@pytest.fixture(scope="module", params=SAMPLES)
def sample(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    return _load(request.param)


def assert_matches_talib(ours: np.ndarray, theirs: np.ndarray) -> None:
    """NaN exactly where TA-Lib is NaN, and within 1e-9 relative error elsewhere."""
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert (~np.isnan(theirs)).sum() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0.0, equal_nan=True)


@pytest.mark.parametrize("period", [2, 20, 200])
def test_sma_matches_talib(sample: dict[str, np.ndarray], period: int) -> None:
    assert_matches_talib(ind.sma(sample["close"], period), talib.SMA(sample["close"], period))


@pytest.mark.parametrize("period", [3, 21, 50, 200])
def test_ema_matches_talib(sample: dict[str, np.ndarray], period: int) -> None:
    assert_matches_talib(ind.ema(sample["close"], period), talib.EMA(sample["close"], period))


def test_true_range_matches_talib(sample: dict[str, np.ndarray]) -> None:
    h, lo, c = sample["high"], sample["low"], sample["close"]
    assert_matches_talib(ind.true_range(h, lo, c), talib.TRANGE(h, lo, c))


@pytest.mark.parametrize("period", [1, 14, 30])
def test_atr_matches_talib(sample: dict[str, np.ndarray], period: int) -> None:
    h, lo, c = sample["high"], sample["low"], sample["close"]
    assert_matches_talib(ind.atr(h, lo, c, period), talib.ATR(h, lo, c, period))


@pytest.mark.parametrize("period", [2, 14, 28])
def test_rsi_matches_talib(sample: dict[str, np.ndarray], period: int) -> None:
    assert_matches_talib(ind.rsi(sample["close"], period), talib.RSI(sample["close"], period))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5)])
def test_macd_matches_talib(
    sample: dict[str, np.ndarray], fast: int, slow: int, signal: int
) -> None:
    ours = ind.macd(sample["close"], fast, slow, signal)
    line, sig, hist = talib.MACD(sample["close"], fast, slow, signal)
    assert_matches_talib(ours.macd, line)
    assert_matches_talib(ours.signal, sig)
    assert_matches_talib(ours.histogram, hist)
    # The TA-Lib quirk we reproduce: the fast leg is not a standalone EMA(fast).
    standalone = ind.ema(sample["close"], fast) - ind.ema(sample["close"], slow)
    assert not np.allclose(standalone[slow + signal :], line[slow + signal :], rtol=1e-9)


def test_leading_nans_are_skipped_like_talib(sample: dict[str, np.ndarray]) -> None:
    c = sample["close"][:600].copy()
    c[:37] = np.nan
    assert_matches_talib(ind.ema(c, 21), talib.EMA(c, 21))
    assert_matches_talib(ind.rsi(c, 14), talib.RSI(c, 14))
    assert_matches_talib(ind.macd(c).macd, talib.MACD(c)[0])
    h, lo = sample["high"][:600].copy(), sample["low"][:600].copy()
    h[:40] = np.nan  # inputs with different NaN prefixes: the latest start wins
    assert_matches_talib(ind.atr(h, lo, c, 14), talib.ATR(h, lo, c, 14))


def test_2d_equals_stacked_1d() -> None:
    btc, eur = _load(SAMPLES[0]), _load(SAMPLES[1])
    n = 3000
    # Row 2 is left-padded: a shorter history sharing the same 2-D array.
    short = np.concatenate([np.full(700, np.nan), eur["close"][: n - 700]])
    close = np.vstack([btc["close"][:n], eur["close"][:n], short])
    high = np.vstack([btc["high"][:n], eur["high"][:n], short + 0.001])
    low = np.vstack([btc["low"][:n], eur["low"][:n], short - 0.001])
    for fn in (
        lambda c, h, lo: ind.sma(c, 20),
        lambda c, h, lo: ind.ema(c, 21),
        lambda c, h, lo: ind.rsi(c, 14),
        lambda c, h, lo: ind.atr(h, lo, c, 14),
        lambda c, h, lo: ind.true_range(h, lo, c),
        lambda c, h, lo: ind.macd(c).histogram,
        lambda c, h, lo: swing_pivots(h, lo, 3).high,
        lambda c, h, lo: swing_pivots(h, lo, 3).low,
    ):
        stacked = np.vstack([fn(close[r], high[r], low[r]) for r in range(3)])
        np.testing.assert_array_equal(fn(close, high, low), stacked)


def test_hand_computed_small_cases() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # EMA(3): k = 0.5; seed SMA(1,2,3) = 2 at index 2; then 2 + .5*(4-2) = 3; 3 + .5*2 = 4.
    np.testing.assert_array_equal(ind.ema(x, 3), [np.nan, np.nan, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(ind.sma(x, 2), [np.nan, 1.5, 2.5, 3.5, 4.5])
    # EMA(2) of 10,20,10: k = 2/3; seed 15 at index 1; 15 + 2/3*(10-15) = 11.666...
    np.testing.assert_allclose(ind.ema([10.0, 20.0, 10.0], 2), [np.nan, 15.0, 35.0 / 3.0])
    # True range: bar 1 gaps above the prior close 10: max(12-11, |12-10|, |11-10|) = 2.
    high, low, close = [11.0, 12.0, 12.0, 13.0], [9.0, 11.0, 10.0, 12.0], [10.0, 11.5, 11.0, 12.5]
    np.testing.assert_array_equal(ind.true_range(high, low, close), [np.nan, 2.0, 2.0, 2.0])
    # ATR(2): seed = mean(TR1, TR2) = 2 at index 2; then (2*1 + 2)/2 = 2.
    np.testing.assert_array_equal(ind.atr(high, low, close, 2), [np.nan, np.nan, 2.0, 2.0])
    # RSI(2) of 1,2,1,2: changes +1,-1,+1. Seed gain .5, loss .5 -> 50 at index 2;
    # then gain (.5*1+1)/2 = .75, loss (.5*1+0)/2 = .25 -> 75.
    np.testing.assert_allclose(ind.rsi([1.0, 2.0, 1.0, 2.0], 2), [np.nan, np.nan, 50.0, 75.0])
    # A flat series has zero gain and loss: TA-Lib reports 0, not NaN.
    np.testing.assert_array_equal(ind.rsi(np.ones(5), 2)[2:], [0.0, 0.0, 0.0])


def test_swing_pivots_on_hand_built_series() -> None:
    #            0  1  2  3  4  5  6  7  8  9 10 11 12
    high = np.array([5, 6, 7, 10, 8, 7, 6, 7, 8, 9, 9, 8, 7], dtype=float)
    low = np.array([4, 5, 6, 9, 7, 6, 2, 6, 7, 8, 8, 7, 6], dtype=float)
    p = swing_pivots(high, low, confirmation_bars=2)
    # Pivot high at bar 3 (10 > 6,7 and >= 8,7): known at bar 5. Bar 9 (9 > 7,8 and >= 9,8):
    # the first of the equal tops at 9/10 counts; known at bar 11. Bar 10 fails (9 !> 9).
    expected_high = np.full(13, np.nan)
    expected_high[5], expected_high[11] = 10.0, 9.0
    np.testing.assert_array_equal(p.high, expected_high)
    assert p.high_bar[5] == 3 and p.high_bar[11] == 9
    assert (p.high_bar[[i for i in range(13) if i not in (5, 11)]] == -1).all()
    # Pivot low at bar 6 (2 < 7,6 and <= 6,7): known at bar 8.
    expected_low = np.full(13, np.nan)
    expected_low[8] = 2.0
    np.testing.assert_array_equal(p.low, expected_low)
    assert p.low_bar[8] == 6
    latest, latest_bar = forward_fill_last(p.high, p.high_bar)
    assert np.isnan(latest[4]) and latest[5] == 10.0 and latest[10] == 10.0 and latest[12] == 9.0
    assert latest_bar[4] == -1 and latest_bar[6] == 3 and latest_bar[12] == 9


_BTC = _load(SAMPLES[0])


@settings(max_examples=25, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=15_000),
    length=st.integers(min_value=40, max_value=1_500),
    cut=st.floats(min_value=0.05, max_value=0.95),
)
def test_truncating_the_future_changes_no_past_value(start: int, length: int, cut: float) -> None:
    sl = slice(start, start + length)
    h, lo, c = _BTC["high"][sl], _BTC["low"][sl], _BTC["close"][sl]
    t = max(1, int(len(c) * cut))  # keep bars 0..t-1
    full = _all_indicators(h, lo, c)
    past = _all_indicators(h[:t], lo[:t], c[:t])
    for name in full:
        np.testing.assert_array_equal(full[name][:t], past[name], err_msg=name)


def _all_indicators(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    m = ind.macd(c)
    p = swing_pivots(h, lo, 3)
    return {
        "sma": ind.sma(c, 20),
        "ema": ind.ema(c, 21),
        "atr": ind.atr(h, lo, c, 14),
        "rsi": ind.rsi(c, 14),
        "macd": m.macd,
        "signal": m.signal,
        "pivot_high": p.high,
        "pivot_low": p.low,
        "pivot_high_bar": p.high_bar.astype(float),
    }


def test_rejects_bad_periods() -> None:
    with pytest.raises(ValueError):
        ind.ema([1.0, 2.0], 0)
    with pytest.raises(ValueError):
        ind.sma(np.ones((2, 2, 2)), 2)


@pytest.mark.parametrize("period", [2, 20])
def test_rolling_extremes_match_talib(sample: dict[str, np.ndarray], period: int) -> None:
    assert_matches_talib(ind.rolling_max(sample["high"], period), talib.MAX(sample["high"], period))
    assert_matches_talib(ind.rolling_min(sample["low"], period), talib.MIN(sample["low"], period))


def test_lag_shifts_without_wrapping() -> None:
    np.testing.assert_array_equal(ind.lag([1.0, 2.0, 3.0], 1), [np.nan, 1.0, 2.0])
    np.testing.assert_array_equal(ind.lag([[1.0, 2.0], [3.0, 4.0]], 5), np.full((2, 2), np.nan))
