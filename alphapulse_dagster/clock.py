"""The one clock. Core functions take ``now`` explicitly; callers get it from here, tests
pass a fixed time.

``ALPHAPULSE_FROZEN_NOW`` (ISO-8601) freezes the clock for historical replays such as
``make demo``, whose bundled data is from 2017–2019: "now" is then the end of the replayed
day, not today. Never set it in production; it is logged once when used.
"""

from __future__ import annotations

import logging
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
