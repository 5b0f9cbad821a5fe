"""The one clock. Core functions take ``now`` explicitly; callers get it from here, tests
pass a fixed time.

A process can be started with ``ALPHAPULSE_FROZEN_NOW`` (ISO-8601) to replay historical
data through the real CLI and server — the browser tests and screenshots serve the 2019
sample as of its last day. It is read from the environment the process was started with,
never written by the code; never set it in production (it is logged once when used).
``make demo`` does not use it: it passes its ``now`` explicitly, to the core's functions as
an argument and to its Dagster runs as the ``alphapulse/now`` run tag
(``assets/run_clock.py``).
"""

from __future__ import annotations

import logging
import math
import os
from datetime import UTC, datetime

log = logging.getLogger(__name__)
_FROZEN_ENV = "ALPHAPULSE_FROZEN_NOW"
_warned: set[str] = set()


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is UTC:  # the common case (drivers return UTC): nothing to do
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (or the frozen replay time, see above)."""
    frozen = os.environ.get(_FROZEN_ENV)
    if frozen:
        if frozen not in _warned:
            _warned.add(frozen)
            log.warning("clock frozen at %s (%s): replay mode", frozen, _FROZEN_ENV)
        return as_utc(datetime.fromisoformat(frozen))
    return datetime.now(UTC)


def parse_utc_time(value: object) -> datetime:
    """The one time parser: a datetime (naive = UTC), ISO-8601 text (``Z``, an offset, or
    naive = UTC) or epoch *milliseconds* (a number or a digit string, TradingView's
    ``timenow``) → an aware UTC datetime. Anything else raises ``ValueError`` saying what
    was expected. (The webhook payload adds a sanity range on top.)"""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, bool):
        raise ValueError("must be ISO-8601 or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number of epoch milliseconds")
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("epoch milliseconds out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return parse_utc_time(int(text))
        try:
            return as_utc(datetime.fromisoformat(text))
        except (ValueError, OverflowError):
            raise ValueError("must be ISO-8601 or epoch milliseconds") from None
    raise ValueError("must be ISO-8601 or epoch milliseconds")
