"""Model heads on hand-built series, the consensus rule and custom head registration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.signals.model_heads import (
    HEADS,
    LONG,
    NONE,
    SHORT,
    ConsensusRule,
    HeadOutput,
    breakout_head,
    consensus,
    evaluate_heads,
    model_heads_analysis,
    momentum_head,
    resolve_head,
    run_head,
    trend_head,
    volume_head,
)


def steady(step: float, n: int = 120, volume: float = 100.0) -> Bars:
    """Close 1000 + step*i, body 0.25*sign(step), high/low = max/min(open, close) +/- 1."""
    close = 1000.0 + step * np.arange(n)
    open_ = close - np.sign(step) * 0.25
    return Bars.from_arrays(
        open_, np.maximum(open_, close) + 1, np.minimum(open_, close) - 1, close, np.full(n, volume)
    )


def test_trend_head_long_on_uptrend_short_on_downtrend() -> None:
    up, down = trend_head(steady(+2.0)), trend_head(steady(-2.0))
    # EMA50 starts at bar 49, and the 3-bar slope needs EMA21 from bar 20: defined from 49.
    assert (up.direction[0, :49] == NONE).all() and (up.direction[0, 49:] == LONG).all()
    assert (down.direction[0, 49:] == SHORT).all()
    # Linear trend: EMA21 - EMA50 = step * (24.5 - 10) = 29 price = 29 / 3 ATR > 2 ATR.
    assert up.features["ema_21"][0, -1] - up.features["ema_50"][0, -1] == pytest.approx(29.0)
    assert up.confidence[0, -1] == pytest.approx(1.0)
    assert (up.confidence[0, :49] == 0).all()


def test_momentum_head() -> None:
    up, down = momentum_head(steady(+2.0)), momentum_head(steady(-2.0))
    # Only gains: RSI = 100 from bar 14; MACD histogram 0 for a linear trend -> not > 0.
    assert up.features["rsi_14"][0, -1] == 100.0
    # A linear series has a constant MACD line, so its signal catches up: histogram ~ 0.
    assert abs(up.features["macd_histogram"][0, -1]) < 1e-9
    accel = Bars.from_arrays(*(np.vstack([b]) for b in _accelerating()))
    a = momentum_head(accel)
    assert a.direction[0, -1] == LONG and a.confidence[0, -1] == 1.0  # RSI 100 -> 0.5 + 0.5
    assert down.features["rsi_14"][0, -1] == 0.0


def _accelerating() -> tuple[np.ndarray, ...]:
    close = 1000.0 + 0.05 * np.arange(120) ** 2
    open_ = close - 0.25
    return open_, close + 1, open_ - 1, close, np.full(120, 100.0)


def test_breakout_head() -> None:
    flat = np.full(40, 100.0)
    high, low, close, open_ = flat + 1, flat - 1, flat.copy(), flat.copy()
    close[-1], high[-1] = 103.0, 103.5  # closes 2 above the prior 20-bar high of 101
    out = breakout_head(Bars.from_arrays(open_, high, low, close, np.full(40, 1.0)))
    assert out.direction[0, -1] == LONG and (out.direction[0, :-1] == NONE).all()
    assert out.features["channel_high"][0, -1] == 101.0
    atr = out.features["atr_14"][0, -1]
    assert out.confidence[0, -1] == pytest.approx(min(1.0, 0.5 + 0.5 * 2.0 / atr))
    close[-1], low[-1] = 97.0, 96.5
    assert (
        breakout_head(Bars.from_arrays(open_, high, low, close, np.ones(40))).direction[0, -1]
        == SHORT
    )


def test_volume_head() -> None:
    b = steady(+2.0, n=30)
    vol = b.volume.copy()
    vol[0, -1] = 180.0  # 1.8x the mean of the previous 20 bars, on a bullish bar
    out = volume_head(Bars(b.open, b.high, b.low, b.close, vol))
    assert out.direction[0, -1] == LONG and out.confidence[0, -1] == pytest.approx(0.9)
    assert (out.direction[0, :-1] == NONE).all()


def _fixed(direction: int, conf: float) -> HeadOutput:
    shape = (1, 3)
    return HeadOutput(np.full(shape, direction, np.int8), np.full(shape, conf))


def test_consensus_rule() -> None:
    rule = ConsensusRule(min_agreeing_heads=3, min_mean_confidence=0.6, heads=("a", "b", "c", "d"))
    three_long = {
        "a": _fixed(1, 0.7),
        "b": _fixed(1, 0.6),
        "c": _fixed(1, 0.8),
        "d": _fixed(-1, 1.0),
    }
    c = consensus(three_long, rule)
    assert (c.direction == LONG).all() and c.confidence[0, 0] == pytest.approx(0.7)
    assert c.agreeing[:, 0, 0].tolist() == [True, True, True, False]
    assert c.fired[0].tolist() == [True, False, False]  # fires on the change only
    weak = {**three_long, "b": _fixed(1, 0.2)}  # mean (0.7 + 0.2 + 0.8) / 3 < 0.6
    assert (consensus(weak, rule).direction == NONE).all()
    two = {**three_long, "c": _fixed(0, 0.0)}
    assert (consensus(two, rule).direction == NONE).all()
    every = ConsensusRule(3, 0.6, ("a", "b", "c", "d"), fire_on="every_bar")
    assert consensus(three_long, every).fired.all()
    tie = ConsensusRule(2, 0.5, ("a", "b", "c", "d"))
    split = {"a": _fixed(1, 0.9), "b": _fixed(1, 0.9), "c": _fixed(-1, 0.9), "d": _fixed(-1, 0.9)}
    assert (consensus(split, tie).direction == NONE).all()


def test_custom_head_by_dotted_path() -> None:
    spec = "alphapulse_dagster.signals.example_heads:mean_reversion_head"
    head = resolve_head(spec)
    assert spec not in HEADS and head.__name__ == "mean_reversion_head"
    close = np.concatenate([np.full(10, 100.0), [90.0]])  # a sharp drop: RSI(2) = 0
    bars = Bars.from_arrays(close, close + 1, close - 1, close, np.ones(11))
    out = run_head(spec, head, bars)
    assert out.direction[0, -1] == LONG and out.confidence[0, -1] == 1.0
    rule = ConsensusRule(min_agreeing_heads=1, min_mean_confidence=0.5, heads=("trend", spec))
    res = evaluate_heads(bars, rule)
    assert res.direction[0, -1] == LONG and res.head_names == ("trend", spec)
    with pytest.raises(ValueError, match="cannot import"):
        resolve_head("alphapulse_dagster.signals.example_heads:nope")
    with pytest.raises(ValueError, match="unknown head"):
        resolve_head("not_a_head")


def test_head_contract_is_enforced() -> None:
    bars = steady(1.0, n=5)
    with pytest.raises(ValueError, match="confidence"):
        run_head("bad", lambda b: HeadOutput(np.zeros((1, 5), np.int8), np.full((1, 5), 2.0)), bars)
    with pytest.raises(ValueError, match="shape"):
        run_head("bad", lambda b: HeadOutput(np.zeros((1, 4), np.int8), np.zeros((1, 4))), bars)


def test_model_heads_analysis_is_json_and_complete() -> None:
    bars = steady(+2.0)
    res = evaluate_heads(bars, ConsensusRule(min_agreeing_heads=1, min_mean_confidence=0.0))
    doc = model_heads_analysis(res, 0, 5)  # early bar: NaN features become null
    json.dumps(doc, allow_nan=False)
    assert set(doc["heads"]) == {"trend", "momentum", "volatility_breakout", "volume"}
    assert doc["heads"]["trend"]["features"]["ema_50"] is None
    late = model_heads_analysis(res, 0, 119)
    assert (
        late["heads"]["trend"]["direction"] == "LONG"
        and "trend" in late["consensus"]["agreeing_heads"]
    )


def test_heads_vectorise_across_symbols() -> None:
    up, down = steady(+2.0), steady(-1.5)
    both = Bars(
        *(
            np.vstack([getattr(up, c), getattr(down, c)])
            for c in ("open", "high", "low", "close", "volume")
        )
    )
    for name, head in HEADS.items():
        together = head(both)
        for r, single in enumerate((up, down)):
            alone = head(single)
            np.testing.assert_array_equal(together.direction[r], alone.direction[0], err_msg=name)
            np.testing.assert_array_equal(together.confidence[r], alone.confidence[0], err_msg=name)
