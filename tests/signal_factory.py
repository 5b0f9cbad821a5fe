"""Hand-built refined signals for storage tests (the shape refine_entries produces)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alphapulse_dagster.signals.signal_generation import signal_id

T0 = datetime(2019, 6, 3, 4, tzinfo=UTC)


def refined_signal(
    symbol: str = "BTCUSD", direction: str = "LONG", timestamp: datetime = T0, **overrides: Any
) -> dict[str, Any]:
    sign = 1 if direction == "LONG" else -1
    signal: dict[str, Any] = {
        "signal_id": signal_id(symbol, "4h", timestamp, direction),
        "symbol": symbol,
        "direction": direction,
        "signal_timeframe": "4h",
        "entry_timeframe": "1h",
        "timestamp": timestamp,
        "signal_confidence": 0.72,
        "model_heads_analysis": {"trend": {"direction": direction, "confidence": 0.8}},
        "market_price": 8000.0,
        "entry_price": 8000.0 - sign * 40.0,
        "stop_loss": 8000.0 - sign * 40.0 - sign * 120.0,
        "take_profits": [8000.0 - sign * 40 + sign * 160 * k for k in (1.0, 1.5, 2.5)],
        "targets_r": [4 / 3, 2.0, 10 / 3],
        "risk_reward_ratio": 4 / 3,
        "entry_strategy": "FIBONACCI_618",
        "entry_pattern": "SWING_RETRACEMENT",
        "entry_confidence": 0.66,
        "atr": 80.0,
        "entry_improvement_bps": 50.0,
        "fallback_reason": None,
        "htf_alignment": {"1d": "BULLISH" if direction == "LONG" else "BEARISH"},
        "htf_agreement": "ALIGNED",
        "refinement_error": None,
        "entry_analysis": {"candidates": [], "chosen": "FIBONACCI_618"},
    }
    signal.update(overrides)
    return signal
