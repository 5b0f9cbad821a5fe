"""The one clock. Core functions take ``now`` explicitly; callers get it from here, tests
pass a fixed time. A replay of historical data (``make demo``) passes its own ``now``
explicitly too — to the core's functions, and to its Dagster runs as the ``alphapulse/now``
run tag (``assets/run_clock.py``) — never through the process environment.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is UTC:  # the common case (drivers return UTC): nothing to do
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
