"""Tier 3 of the reconciliation (confidence 0.9): what the indicator's ``trade_id`` says.

Form: ``YYYYMMDD_HHMMSS_<BULLISH|BEARISH|LONG|SHORT>[_<symbol>]``, the signal's time in
UTC, e.g. ``20250301_140000_BULLISH_BTCUSDT`` — the signal time and direction of a signal
whose SIGNAL_CREATED never arrived.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from alphapulse_dagster.direction import normalise_direction

_TRADE_ID = re.compile(
    r"^(?P<date>\d{8})_(?P<time>\d{6})_(?P<dir>BULLISH|BEARISH|LONG|SHORT)(?:_(?P<symbol>.+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParsedTradeId:
    signal_time: datetime  # UTC
    direction: str  # LONG | SHORT
    symbol: str | None


@functools.lru_cache(maxsize=8192)  # pure; a cycle asks twice per signal, gaps once more
def parse_trade_id(trade_id: str | None) -> ParsedTradeId | None:
    """Parse the indicator's ``YYYYMMDD_HHMMSS_<BULLISH|BEARISH|LONG|SHORT>[_<symbol>]``
    (time in UTC). Anything else — including impossible dates — is not parseable: None."""
    if not trade_id:
        return None
    match = _TRADE_ID.match(trade_id.strip())
    if match is None:
        return None
    date, clock = match["date"], match["time"]
    try:  # int slices: strptime costs ~15 us, and a cycle parses thousands of ids
        when = datetime(
            int(date[:4]),
            int(date[4:6]),
            int(date[6:]),
            int(clock[:2]),
            int(clock[2:4]),
            int(clock[4:]),
        )
    except ValueError:
        return None
    direction = normalise_direction(match["dir"])
    assert direction is not None
    return ParsedTradeId(when.replace(tzinfo=UTC), direction, match["symbol"] or None)
