"""Entry refinement on hand-built series, fallbacks, invariants and fill status."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import talib
from candle_builders import concat, frame, mirror, trend_bars
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse_dagster.config import MtfStrategies
from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.signals import key_levels
from alphapulse_dagster.signals.entry_refinement import (
    refine_entries,
    refine_entry,
)
from tests.sample_data import SAMPLE_DIR


def params(**sections: object) -> MtfStrategies:
    """The refinement's parameters as the config file would give them (validated)."""
    return MtfStrategies.model_validate(sections)


def fib_setup() -> pd.DataFrame:
    """Downtrend, a 10-bar rally, a 4-bar pullback. Every true range is 2, so ATR(14) = 2.

    Bars 0..209: close 300 - 0.5 i (bearish, high/low = close +/- 1): no pivots.
    Bars 210..219: close 196.5 .. 205.5 (+1/bar). Bars 220..223: close 205 .. 203.5.
    Pivot low at bar 209: low 194.5 (confirmed at 212). Pivot high at bar 219: high 206.5
    (confirmed at 222). Leg L=194.5 -> H=206.5, range 12. Market = 203.5.
      FIB_0.5   = 206.5 - 6     = 200.5    distance (203.5-200.5)/2   = 1.5 ATR
      FIB_0.618 = 206.5 - 7.416 = 199.084  distance 4.416/2           = 2.208 ATR
      FIB_0.786 = 206.5 - 9.432 = 197.068  distance 3.216 ATR > 3     -> rejected
    EMA21 < EMA50 after the long downtrend: no EMA trend agreement. No structure break: no OB.
    Scores: 0.65 - 0.03*1.5 = 0.605 ; 0.70 - 0.03*2.208 = 0.63376 -> FIBONACCI_618 wins.
    Stop: ATR stop 199.084 - 3 = 196.084; leg low 194.5 - 0.1*2 = 194.3 is further -> 194.3.
    Targets 199.084 + (4, 6, 10). R:R = 4 / 4.784. Improvement (203.5-199.084)/203.5 in bps.
    """
    return concat(
        trend_bars(300.0, -0.5, 210), trend_bars(196.5, 1.0, 10), trend_bars(205.0, -0.5, 4)
    )


def test_fibonacci_entry_long_hand_computed() -> None:
    df = fib_setup()
    r = refine_entry("FIB", "LONG", 203.5, df)
    assert r.entry_strategy == "FIBONACCI_618"
    assert r.entry_pattern == "FIB_0.618_RETRACEMENT"
    assert r.atr == 2.0
    assert r.entry_price == pytest.approx(199.084, abs=1e-12)
    assert r.stop_loss == pytest.approx(194.3, abs=1e-12)
    assert r.take_profits == pytest.approx((203.084, 205.084, 209.084), abs=1e-12)
    assert r.risk_reward_ratio == pytest.approx(4 / 4.784)
    assert r.targets_r == pytest.approx((4 / 4.784, 6 / 4.784, 10 / 4.784))
    assert r.entry_confidence == pytest.approx(0.63376)
    assert r.entry_improvement_bps == pytest.approx((203.5 - 199.084) / 203.5 * 1e4)
    cands = {c["pattern"]: c for c in r.analysis["candidates"]}
    assert cands["FIB_0.5_RETRACEMENT"]["level"] == pytest.approx(200.5)
    assert cands["FIB_0.5_RETRACEMENT"]["score"] == pytest.approx(0.605)
    assert cands["FIB_0.786_RETRACEMENT"]["rejected_because"] == "beyond max_entry_distance_atr"
    assert cands["EMA_21_PULLBACK"]["rejected_because"] == "no EMA trend agreement"
    assert not cands["BULLISH_ORDER_BLOCK_TOP"]["valid"]
    assert [c["chosen"] for c in r.analysis["candidates"]].count(True) == 1


def test_fibonacci_entry_short_is_the_mirror_image() -> None:
    m = mirror(fib_setup(), 500.0)
    r = refine_entry("FIB", "SHORT", 500.0 - 203.5, m)
    assert r.entry_strategy == "FIBONACCI_618"
    assert 500.0 - r.entry_price == pytest.approx(199.084)
    assert 500.0 - r.stop_loss == pytest.approx(194.3)
    assert [500.0 - t for t in r.take_profits] == pytest.approx([203.084, 205.084, 209.084])


def test_ema_pullback_entry_hand_computed() -> None:
    """Linear uptrend close = 100 + 0.5 i, i < 250, true range 2 (ATR 2).

    For a linear series the SMA seed already equals the steady-state EMA lag, so
    EMA21 = close - 0.5 * 10 = close - 5 (2.5 ATR: valid) and EMA50 = close - 12.25
    (6.125 ATR: too far). A strict uptrend has no pivots, so no Fibonacci leg and no order
    block. Entry = 224.5 - 5 = 219.5; score 0.62 - 0.03 * 2.5 = 0.545; no swing low, so
    the ATR stop 219.5 - 3 = 216.5; R:R = 4 / 3.
    """
    df = concat(trend_bars(100.0, 0.5, 250))
    r = refine_entry("EMA", "LONG", 224.5, df)
    assert (r.entry_strategy, r.entry_pattern) == ("EMA_PULLBACK", "EMA_21_PULLBACK")
    assert r.entry_price == pytest.approx(219.5, abs=1e-9)
    assert r.stop_loss == pytest.approx(216.5, abs=1e-9)
    assert r.risk_reward_ratio == pytest.approx(4 / 3)
    assert r.entry_confidence == pytest.approx(0.545)


def order_block_setup() -> pd.DataFrame:
    """Uptrend to bar 209 (close 204.5, high 205.5), pullback bars 210..213 (bearish,
    closes 204 .. 202.5), then a displacement: bar 214 closes 204.5, bar 215 closes 206.5 >
    the swing high 205.5 (pivot at 209, confirmed at 212): break of structure at 215.
    The last bearish candle before it is bar 213: high 203.5, low 201.5 -> bullish order
    block [201.5, 203.5]. Later lows (206.0 ..) never come back to 203.5: unmitigated.
    """
    tail = (
        [202.5, 204.5, 206.5, 207.0, 207.5, 207.2],
        [205.0, 207.0, 207.5, 208.0, 208.0, 208.1],
        [202.3, 204.2, 206.0, 206.5, 206.8, 206.9],
        [204.5, 206.5, 207.0, 207.5, 207.2, 207.6],
    )
    return concat(trend_bars(100.0, 0.5, 210), trend_bars(204.0, -0.5, 4, body=0.5), tail)


def test_order_block_entry_top_and_middle() -> None:
    df = order_block_setup()
    r = refine_entry("OB", "LONG", 207.6, df)
    assert r.entry_strategy == "ORDER_BLOCK"
    assert r.entry_pattern.startswith("BULLISH_ORDER_BLOCK_TOP")
    assert r.entry_price == 203.5
    atr = talib.ATR(df.high.to_numpy(), df.low.to_numpy(), df.close.to_numpy(), 14)[-1]
    assert r.atr == pytest.approx(atr, rel=1e-12)
    # Stop: the further of entry - 1.5 ATR and the block's bottom 201.5 - 0.1 ATR.
    assert r.stop_loss == pytest.approx(min(203.5 - 1.5 * atr, 201.5 - 0.1 * atr))
    mid = refine_entry("OB", "LONG", 207.6, df, params(entry={"order_block_entry": "middle"}))
    assert mid.entry_price == 202.5 and mid.entry_strategy == "ORDER_BLOCK"


def test_short_order_block_is_labelled_by_the_bottom_edge_it_enters_at() -> None:
    # regression: a SHORT entry at a bearish block's bottom edge was labelled ..._TOP
    m = mirror(order_block_setup(), 500.0)
    r = refine_entry("OB", "SHORT", 500.0 - 207.6, m)
    assert r.entry_strategy == "ORDER_BLOCK"
    assert r.entry_pattern.startswith("BEARISH_ORDER_BLOCK_BOTTOM")
    assert r.entry_price == pytest.approx(500.0 - 203.5)  # the mirrored block's bottom
    ob = next(c for c in r.analysis["candidates"] if c["strategy"] == "ORDER_BLOCK")
    assert ob["pattern"] == "BEARISH_ORDER_BLOCK_BOTTOM"


def test_mitigated_order_block_is_not_a_candidate() -> None:
    df = order_block_setup()
    dip = frame(
        [207.6], [207.9], [203.4], [207.5], start=str(df.open_time.iloc[-1] + pd.Timedelta("1h"))
    )
    df = pd.concat([df, dip], ignore_index=True)  # a low of 203.4 trades back into the block
    r = refine_entry("OB", "LONG", 207.5, df)
    ob = next(c for c in r.analysis["candidates"] if c["strategy"] == "ORDER_BLOCK")
    assert not ob["valid"] and r.entry_strategy != "ORDER_BLOCK"


def test_no_key_level_gives_market_entry() -> None:
    # A strict uptrend that is too steep for EMA21 to be within 0.5 ATR; no structure.
    df = concat(trend_bars(100.0, 0.5, 250))
    r = refine_entry("X", "LONG", 224.5, df, params(entry={"max_entry_distance_atr": 0.5}))
    assert (r.entry_strategy, r.entry_pattern) == ("MARKET_ENTRY", "NO_KEY_LEVEL")
    assert r.entry_price == 224.5 and r.atr == pytest.approx(2.0)
    assert r.stop_loss == pytest.approx(224.5 - 3.0) and r.entry_improvement_bps == 0.0


def test_insufficient_data_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    df = concat(trend_bars(100.0, 0.5, 150))
    with caplog.at_level(logging.WARNING):
        r = refine_entry("THIN", "LONG", 200.0, df)
    assert (r.entry_strategy, r.entry_pattern) == ("MARKET_ENTRY", "INSUFFICIENT_DATA")
    assert r.entry_price == 200.0 and r.atr == pytest.approx(2.0)  # 1% of the price
    assert r.stop_loss == pytest.approx(197.0) and r.take_profits == pytest.approx((204, 206, 210))
    assert r.analysis["atr_source"] == "fallback_estimate"
    assert "INSUFFICIENT_DATA" in caplog.text and "THIN" in caplog.text


def _good_rows() -> list[pd.DataFrame]:
    return [fib_setup(), order_block_setup().iloc[:220], concat(trend_bars(100.0, 0.5, 220))]


def _batch(
    frames: list[pd.DataFrame],
    directions: list[str],
    markets: list[float],
    parameters: MtfStrategies | None = None,
) -> list:
    width = max(len(f) for f in frames)
    arrays = {
        c: np.full((len(frames), width), np.nan) for c in ("open", "high", "low", "close", "volume")
    }
    for r, f in enumerate(frames):
        for c in arrays:
            arrays[c][r, : len(f)] = f[c].to_numpy()
    bars = Bars(**arrays)
    symbols = [f"S{r}" for r in range(len(frames))]
    idx = [len(f) - 1 for f in frames]
    return refine_entries(
        bars, range(len(frames)), idx, directions, markets, symbols, parameters or MtfStrategies()
    )


def test_corrupted_symbol_does_not_fail_the_batch() -> None:
    good = _good_rows()
    bad = fib_setup()
    bad.loc[215, "high"] = np.nan  # a hole inside the data
    bad2 = fib_setup()
    bad2.loc[200, "low"] = -5.0
    frames = [good[0], bad, good[1], bad2, good[2]]
    markets = [float(f.close.iloc[-1]) for f in frames]
    out = _batch(frames, ["LONG"] * 5, markets)
    for i in (1, 3):
        assert (
            out[i].entry_pattern == "REFINEMENT_ERROR" and out[i].entry_strategy == "MARKET_ENTRY"
        )
        assert "corrupted entry candles" in (out[i].error or "")
        assert out[i].entry_price == markets[i]
        assert out[i].stop_loss == pytest.approx(markets[i] * (1 - 0.015))
    alone = [refine_entry(f"S{i}", "LONG", markets[i], frames[i]) for i in (0, 2, 4)]
    for i, a in zip((0, 2, 4), alone, strict=True):
        assert out[i].entry_price == a.entry_price and out[i].entry_strategy == a.entry_strategy


def test_exception_in_one_symbol_falls_back_to_refinement_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = key_levels.swing_legs

    def explode_on_row_marker(f, rows, bars_, sign):  # type: ignore[no-untyped-def]
        if (bars_ == 218).any():  # only the "bad" signal uses entry bar 218
            raise RuntimeError("boom")
        return real(f, rows, bars_, sign)

    monkeypatch.setattr(key_levels, "swing_legs", explode_on_row_marker)
    frames = [fib_setup(), fib_setup().iloc[:219], fib_setup()]
    out = _batch(frames, ["LONG"] * 3, [203.5, 205.5, 203.5])
    assert out[1].entry_pattern == "REFINEMENT_ERROR" and "boom" in (out[1].error or "")
    assert out[0].entry_strategy == out[2].entry_strategy == "FIBONACCI_618"


def test_malformed_frame_gives_refinement_error() -> None:
    r = refine_entry("X", "SHORT", 100.0, pd.DataFrame({"close": [1.0, 2.0]}))
    assert r.entry_pattern == "REFINEMENT_ERROR" and "KeyError" in (r.error or "")
    assert r.stop_loss > r.entry_price > max(r.take_profits)


_BTC = pd.read_csv(SAMPLE_DIR / "BTCUSD_1h.csv")


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 17_000 - 400),
    length=st.integers(150, 400),
    long=st.booleans(),
    scale=st.floats(1e-4, 1e3),
    stop_mult=st.floats(0.2, 3.0),
    tps=st.lists(st.floats(0.2, 8.0), min_size=1, max_size=4),
    ob_entry=st.sampled_from(["top", "middle"]),
)
def test_invariants_always_hold(
    start: int,
    length: int,
    long: bool,
    scale: float,
    stop_mult: float,
    tps: list[float],
    ob_entry: str,
) -> None:
    w = _BTC.iloc[start : start + length].copy()
    for c in ("open", "high", "low", "close"):
        w[c] = w[c] * scale
    parameters = params(
        risk={"stop_loss_atr_multiplier": stop_mult, "take_profit_atr_multipliers": sorted(tps)},
        entry={"order_block_entry": ob_entry},
    )
    r = refine_entry("BTC", "LONG" if long else "SHORT", float(w.close.iloc[-1]), w, parameters)
    values = [r.entry_price, r.stop_loss, *r.take_profits, r.atr, r.risk_reward_ratio]
    assert all(np.isfinite(v) and v > 0 for v in values)
    if long:
        assert r.stop_loss < r.entry_price < min(r.take_profits)
        assert r.entry_price <= r.market_price
    else:
        assert r.stop_loss > r.entry_price > max(r.take_profits)
        assert r.entry_price >= r.market_price
    assert r.entry_improvement_bps >= 0
    assert list(r.targets_r) == sorted(r.targets_r)  # nearest target first
    assert r.risk_reward_ratio == pytest.approx(r.targets_r[0])
    assert 0.0 <= r.entry_confidence <= 1.0
    if length < 200:
        assert r.entry_pattern == "INSUFFICIENT_DATA"


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="order_block_entry"):
        params(entry={"order_block_entry": "bottom"})
    with pytest.raises(ValueError, match="fallback_atr_pct 0.5"):
        params(fallback_atr_pct=0.5)  # 5 ATR targets would go negative on SHORTs
    with pytest.raises(ValueError, match="Fibonacci level must be in"):
        params(entry={"fibonacci_levels": [0.618, 1.5]})
    with pytest.raises(ValueError, match="non-empty list of periods"):
        params(entry={"ema_periods": []})
    assert params(fallback_atr_pct=0.19).fallback_atr_pct == 0.19  # 0.19 x 5 ATR < 1
