"""Values read from event payloads, as the registry stores them: finite positive prices,
our timeframe names (LONG / SHORT: ``alphapulse_dagster.direction``). Anything else reads
as absent (None): a bad value is a gap to fill, never an error."""

from __future__ import annotations

import math
from typing import Any

from alphapulse_dagster.market.timeframes import UnknownTimeframe, normalise_interval


def price(value: Any) -> float | None:
    """A finite positive price, or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def price_list(value: Any) -> list[float] | None:
    if not isinstance(value, list | tuple):
        return None
    prices = [price(v) for v in value]
    clean = [p for p in prices if p is not None]
    return clean or None


def timeframe_of(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return normalise_interval(str(value))
    except UnknownTimeframe:
        return None
