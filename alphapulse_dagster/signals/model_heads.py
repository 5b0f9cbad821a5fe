"""Model heads: deterministic directional opinions on signal-timeframe bars, and consensus.

A head is a plain function ``head(bars: Bars) -> HeadOutput``. ``bars`` holds
``(n_symbols, n_bars)`` arrays; every output array has that shape and its value at bar
``i`` uses bars ``<= i`` only (the bar's close is known at its close time). Direction is
int8 (+1 LONG, -1 SHORT, 0 NONE); confidence is in [0, 1] and 0 wherever direction is 0.

Built-in heads (``HEADS``): ``trend``, ``momentum``, ``volatility_breakout``, ``volume``. Users add
their own by dotted path (``"package.module:function"``) in config, see
:mod:`alphapulse_dagster.signals.example_heads`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alphapulse_dagster.market import indicators as ind
from alphapulse_dagster.market.bars import Bars

FloatArray = NDArray[np.float64]
DirectionArray = NDArray[np.int8]

LONG, SHORT, NONE = 1, -1, 0
DIRECTION_NAMES = {LONG: "LONG", SHORT: "SHORT", NONE: "NONE"}


@dataclass(frozen=True)
class HeadOutput:
    """One head's opinion per symbol and bar (all arrays ``(n_symbols, n_bars)``)."""

    direction: DirectionArray
    confidence: FloatArray
    features: dict[str, FloatArray] = field(default_factory=dict)


HeadFn = Callable[[Bars], HeadOutput]


def _opinion(
    long: NDArray[np.bool_], short: NDArray[np.bool_], confidence: FloatArray
) -> tuple[DirectionArray, FloatArray]:
    direction = np.where(long, LONG, np.where(short, SHORT, NONE)).astype(np.int8)
    conf = np.where(direction != NONE, np.clip(np.nan_to_num(confidence, nan=0.0), 0.0, 1.0), 0.0)
    return direction, conf


def trend_head(bars: Bars) -> HeadOutput:
    """EMA alignment and slope. LONG when close > EMA21 > EMA50 and EMA21 rose over the
    last 3 bars (SHORT mirrored). Confidence 0.5 + 0.5 * min(1, |EMA21 - EMA50| / (2 ATR14)).
    Features: ema_21, ema_50 (price), ema_21_slope (price per bar), ema_spread_atr (ATR)."""
    close = bars.close
    fast, slow = ind.ema(close, 21), ind.ema(close, 50)
    atr = ind.atr(bars.high, bars.low, close, 14)
    slope = (fast - ind.lag(fast, 3)) / 3.0
    with np.errstate(invalid="ignore", divide="ignore"):
        spread_atr = (fast - slow) / atr
        long = (close > fast) & (fast > slow) & (slope > 0)
        short = (close < fast) & (fast < slow) & (slope < 0)
    direction, conf = _opinion(long, short, 0.5 + 0.5 * np.minimum(1.0, np.abs(spread_atr) / 2.0))
    return HeadOutput(
        direction,
        conf,
        {"ema_21": fast, "ema_50": slow, "ema_21_slope": slope, "ema_spread_atr": spread_atr},
    )


def momentum_head(bars: Bars) -> HeadOutput:
    """RSI(14) and MACD(12, 26, 9). LONG when RSI > 50 and the MACD histogram > 0 (SHORT
    mirrored). Confidence 0.5 + 0.5 * min(1, |RSI - 50| / 20). Features: rsi_14 (0-100),
    macd, macd_signal, macd_histogram (price)."""
    rsi = ind.rsi(bars.close, 14)
    m = ind.macd(bars.close, 12, 26, 9)
    with np.errstate(invalid="ignore"):
        long = (rsi > 50) & (m.histogram > 0)
        short = (rsi < 50) & (m.histogram < 0)
    direction, conf = _opinion(long, short, 0.5 + 0.5 * np.minimum(1.0, np.abs(rsi - 50) / 20))
    return HeadOutput(
        direction,
        conf,
        {"rsi_14": rsi, "macd": m.macd, "macd_signal": m.signal, "macd_histogram": m.histogram},
    )


def breakout_head(bars: Bars) -> HeadOutput:
    """Volatility breakout of the Donchian channel of the *previous* 20 bars. LONG when the
    close is above the prior 20-bar high (SHORT: below the prior low). Confidence
    0.5 + 0.5 * min(1, breakout distance / ATR14). Features: channel_high, channel_low
    (price), atr_14 (price), breakout_atr (ATR units, signed)."""
    upper = ind.lag(ind.rolling_max(bars.high, 20), 1)
    lower = ind.lag(ind.rolling_min(bars.low, 20), 1)
    atr = ind.atr(bars.high, bars.low, bars.close, 14)
    close = bars.close
    with np.errstate(invalid="ignore", divide="ignore"):
        above = (close - upper) / atr
        below = (lower - close) / atr
        long = (close > upper) & (atr > 0)
        short = (close < lower) & (atr > 0)
        distance = np.where(long, above, np.where(short, below, 0.0))
    direction, conf = _opinion(long, short, 0.5 + 0.5 * np.minimum(1.0, distance))
    return HeadOutput(
        direction,
        conf,
        {
            "channel_high": upper,
            "channel_low": lower,
            "atr_14": atr,
            "breakout_atr": np.where(short, -below, np.where(long, above, 0.0)),
        },
    )


def volume_head(bars: Bars) -> HeadOutput:
    """Volume confirmation. Volume ratio = volume / mean volume of the previous 20 bars.
    LONG when the ratio >= 1.2 on a bullish bar (close > open), SHORT on a bearish one.
    Confidence 0.5 + 0.5 * min(1, ratio - 1). Features: volume_ratio (x), body (price)."""
    avg = ind.lag(ind.sma(bars.volume, 20), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = bars.volume / avg
        body = bars.close - bars.open
        heavy = ratio >= 1.2
        long, short = heavy & (body > 0), heavy & (body < 0)
    direction, conf = _opinion(long, short, 0.5 + 0.5 * np.minimum(1.0, ratio - 1.0))
    return HeadOutput(direction, conf, {"volume_ratio": ratio, "body": body})


HEADS: dict[str, HeadFn] = {
    "trend": trend_head,
    "momentum": momentum_head,
    "volatility_breakout": breakout_head,
    "volume": volume_head,
}


def register_head(name: str, head: HeadFn) -> None:
    """Add a head to the registry under ``name`` (refuses to replace a built-in silently)."""
    if name in HEADS and HEADS[name] is not head:
        raise ValueError(f"a head named {name!r} is already registered")
    HEADS[name] = head


def resolve_head(spec: str) -> HeadFn:
    """A registered head name, or a dotted path ``"package.module:function"``."""
    if spec in HEADS:
        return HEADS[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        known = ", ".join(sorted(HEADS))
        raise ValueError(f"unknown head {spec!r}: use one of {known} or 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import head {spec!r}: {exc}") from exc
    if not callable(obj):
        raise ValueError(f"head {spec!r} is not callable")
    return obj  # type: ignore[no-any-return]


def run_head(name: str, head: HeadFn, bars: Bars) -> HeadOutput:
    """Call a head and check its contract (shapes, direction values, confidence range)."""
    out = head(bars)
    shape = bars.close.shape
    if not isinstance(out, HeadOutput):
        raise TypeError(f"head {name!r} returned {type(out).__name__}, expected HeadOutput")
    direction = np.asarray(out.direction)
    confidence = np.asarray(out.confidence, dtype=np.float64)
    if direction.shape != shape or confidence.shape != shape:
        raise ValueError(f"head {name!r} returned shape {direction.shape}, expected {shape}")
    if not np.isin(direction, (LONG, SHORT, NONE)).all():
        raise ValueError(f"head {name!r} returned directions outside -1/0/+1")
    if not ((confidence >= 0) & (confidence <= 1)).all():
        raise ValueError(f"head {name!r} returned confidence outside [0, 1] (or NaN)")
    return HeadOutput(direction.astype(np.int8), confidence, dict(out.features))


@dataclass(frozen=True)
class ConsensusRule:
    """How heads make a signal.

    A bar's consensus direction is the one at least ``min_agreeing_heads`` heads point to,
    provided their mean confidence is >= ``min_mean_confidence`` (ties between directions
    make no signal). ``fire_on='change'`` emits a signal only on the bar where the consensus
    direction turns non-NONE or flips; ``'every_bar'`` on every bar with a consensus.
    """

    min_agreeing_heads: int = 3
    min_mean_confidence: float = 0.6
    heads: tuple[str, ...] = ("trend", "momentum", "volatility_breakout", "volume")
    fire_on: str = "change"

    def __post_init__(self) -> None:
        if self.min_agreeing_heads < 1 or self.min_agreeing_heads > len(self.heads):
            raise ValueError("min_agreeing_heads must be between 1 and the number of heads")
        if not 0.0 <= self.min_mean_confidence <= 1.0:
            raise ValueError("min_mean_confidence must be in [0, 1]")
        if self.fire_on not in ("change", "every_bar"):
            raise ValueError("fire_on must be 'change' or 'every_bar'")


@dataclass(frozen=True)
class Consensus:
    """Per symbol and bar: consensus direction, mean confidence of the agreeing heads,
    which heads agreed (``agreeing[h]`` for ``head_names[h]``), and where a signal fires."""

    direction: DirectionArray
    confidence: FloatArray
    agreeing: NDArray[np.bool_]
    fired: NDArray[np.bool_]
    head_names: tuple[str, ...]
    outputs: dict[str, HeadOutput]


def evaluate_heads(bars: Bars, rule: ConsensusRule) -> Consensus:
    """Run the rule's heads on signal-timeframe bars and apply the consensus rule."""
    outputs = {name: run_head(name, resolve_head(name), bars) for name in rule.heads}
    return consensus(outputs, rule)


def consensus(outputs: Mapping[str, HeadOutput], rule: ConsensusRule) -> Consensus:
    """Combine head outputs (see :class:`ConsensusRule`)."""
    names = tuple(outputs)
    dirs = np.stack([outputs[n].direction for n in names])
    confs = np.stack([outputs[n].confidence for n in names])
    best_dir = np.zeros(dirs.shape[1:], dtype=np.int8)
    best_conf = np.zeros(dirs.shape[1:])
    best_count = np.zeros(dirs.shape[1:], dtype=np.int64)
    tie = np.zeros(dirs.shape[1:], dtype=bool)
    for d in (LONG, SHORT):
        votes = dirs == d
        count = votes.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, (confs * votes).sum(axis=0) / np.maximum(count, 1), 0.0)
        ok = (count >= rule.min_agreeing_heads) & (mean >= rule.min_mean_confidence)
        tie |= ok & (count == best_count) & (best_dir != 0)
        better = ok & (count > best_count)
        best_dir = np.where(better, d, best_dir).astype(np.int8)
        best_conf = np.where(better, mean, best_conf)
        best_count = np.where(better, count, best_count)
    best_dir = np.where(tie, 0, best_dir).astype(np.int8)
    best_conf = np.where(tie, 0.0, best_conf)
    agreeing = (dirs == best_dir[np.newaxis]) & (best_dir[np.newaxis] != 0)
    if rule.fire_on == "every_bar":
        fired = best_dir != 0
    else:
        previous = np.zeros_like(best_dir)
        previous[..., 1:] = best_dir[..., :-1]
        fired = (best_dir != 0) & (best_dir != previous)
    return Consensus(best_dir, best_conf, agreeing, fired, names, dict(outputs))


def _json_number(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def model_heads_analysis(result: Consensus, row: int, bar: int) -> dict[str, Any]:
    """JSON-able record of every head's direction, confidence and features at one bar,
    plus the consensus (NaN features become ``None``)."""
    heads: dict[str, Any] = {}
    for h, name in enumerate(result.head_names):
        out = result.outputs[name]
        heads[name] = {
            "direction": DIRECTION_NAMES[int(out.direction[row, bar])],
            "confidence": round(float(out.confidence[row, bar]), 6),
            "agrees": bool(result.agreeing[h, row, bar]),
            "features": {k: _json_number(v[row, bar]) for k, v in out.features.items()},
        }
    return {
        "heads": heads,
        "consensus": {
            "direction": DIRECTION_NAMES[int(result.direction[row, bar])],
            "confidence": round(float(result.confidence[row, bar]), 6),
            "agreeing_heads": [
                n for h, n in enumerate(result.head_names) if result.agreeing[h, row, bar]
            ],
        },
    }
