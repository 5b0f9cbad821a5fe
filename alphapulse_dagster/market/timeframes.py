"""Timeframe vocabulary: the one place that knows what `15m`, `4h` or `1d` mean.

Bars are labelled by their *open* time (UTC); a bar's close time is
``open_time + duration(timeframe)``. Coarser bars are aligned to UTC epoch boundaries
(a 4h bar opens at 00:00, 04:00, …; a 1d bar at 00:00 UTC; a 1w bar on Monday 00:00 UTC).
"""

from __future__ import annotations

from datetime import timedelta

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "12h": 43200,
    "1d": 86400,
    "1w": 604800,
}

# TradingView's {{interval}} spellings → ours.
_TRADINGVIEW_INTERVALS: dict[str, str] = {
    "1": "1m",
    "5": "5m",
    "15": "15m",
    "30": "30m",
    "60": "1h",
    "120": "2h",
    "240": "4h",
    "360": "6h",
    "720": "12h",
    "D": "1d",
    "1D": "1d",
    "W": "1w",
    "1W": "1w",
}


class UnknownTimeframe(ValueError):
    """A timeframe string that is not in :data:`TIMEFRAME_SECONDS`."""


def is_timeframe(value: str) -> bool:
    return value in TIMEFRAME_SECONDS


def duration(timeframe: str) -> timedelta:
    """Length of one bar of ``timeframe``."""
    try:
        return timedelta(seconds=TIMEFRAME_SECONDS[timeframe])
    except KeyError:
        raise UnknownTimeframe(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAME_SECONDS)}"
        ) from None


def seconds(timeframe: str) -> int:
    return int(duration(timeframe).total_seconds())


def normalise_interval(value: str) -> str:
    """Normalise a TradingView ``{{interval}}`` (``15``, ``60``, ``240``, ``D``, ``1D``) or
    one of our own spellings (``15m``, ``1h``) to ours. Raises :class:`UnknownTimeframe`."""
    text = str(value).strip()
    if text in TIMEFRAME_SECONDS:
        return text
    lowered = text.lower()
    if lowered in TIMEFRAME_SECONDS:
        return lowered
    mapped = _TRADINGVIEW_INTERVALS.get(text.upper())
    if mapped is None:
        raise UnknownTimeframe(f"unknown timeframe {value!r}")
    return mapped
