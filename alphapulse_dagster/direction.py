"""A trade's direction: the desk says LONG or SHORT; the indicator may say BULLISH/BEARISH.

This module is the one reader of every spelling. ``normalise_direction`` turns any of them
(any case, surrounding spaces) into LONG / SHORT, ``direction_sign`` into +1 / -1 (the
vectorised code's convention, where prices mirror for SHORT).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

LONG, SHORT = "LONG", "SHORT"
# What a webhook may send (SPEC §16); the webhook keeps the sent word, the rest of the desk
# reads it through normalise_direction.
Spelling = Literal["LONG", "SHORT", "BULLISH", "BEARISH"]
_MEANING = {"LONG": LONG, "BULLISH": LONG, "SHORT": SHORT, "BEARISH": SHORT}
assert set(_MEANING) == set(get_args(Spelling))


def normalise_direction(value: Any) -> str | None:
    """LONG / SHORT from LONG, SHORT, BULLISH, BEARISH (any case); anything else is None."""
    if not isinstance(value, str):
        return None
    return _MEANING.get(value.strip().upper())


def direction_sign(value: Any) -> int:
    """+1 for LONG (any spelling, or +1), -1 for SHORT (or -1); ValueError otherwise."""
    if not isinstance(value, str | bool) and value in (1, -1):
        return int(value)
    direction = normalise_direction(value)
    if direction is None:
        raise ValueError(f"direction must be LONG or SHORT (or BULLISH/BEARISH), got {value!r}")
    return 1 if direction == LONG else -1
