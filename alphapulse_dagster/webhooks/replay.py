"""Replaying a recorded webhook stream as if it had just happened (``--shift-to-now``).

The bundled sample stream is historical (a day of EURUSD in 2017 and a day of BTCUSD in
2019), while the health report covers the signals of the last
``hybrid_sync.health_window_days`` before *now*. Replayed as recorded, the sample falls
outside that window and a newcomer sees a perfect score over zero signals.

``shift_to_now`` moves every event of a symbol by the same whole number of days, chosen so
that the symbol's last event falls within the 24 hours before ``now``. Whole days keep
what the indicator's fields say about the time of day (the session, ``trade_id``'s
``HHMMSS``, bar alignment); one shift per symbol keeps the order of each signal's events
and the gaps between them. ``trade_id`` (and an ``alert_id`` that contains it) carries
the shifted date, so Tier 3 reads the same signal time as the shifted events.

Lines that are not a JSON object with a valid ``time`` pass through unchanged: the
webhook validation then refuses them with its own message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alphapulse_dagster.clock import as_utc
from alphapulse_dagster.sync.trade_id import parse_trade_id
from alphapulse_dagster.webhooks.webhook_payload import parse_event_time

_TRADE_ID_STAMP = len("YYYYMMDD_HHMMSS")


def _event(body: bytes) -> tuple[dict[str, Any], datetime] | None:
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            return None
        return payload, parse_event_time(payload.get("time"))
    except ValueError:  # not JSON, or no valid time
        return None


def _shifted_trade_id(trade_id: Any, shift: timedelta) -> Any:
    parsed = parse_trade_id(trade_id) if isinstance(trade_id, str) else None
    if parsed is None:
        return trade_id
    stamp = f"{parsed.signal_time + shift:%Y%m%d_%H%M%S}"
    return stamp + trade_id.strip()[_TRADE_ID_STAMP:]


@dataclass(frozen=True)
class ShiftedStream:
    bodies: list[bytes]
    days_by_symbol: dict[str, int]  # how far each symbol's events moved


def shift_to_now(bodies: Sequence[bytes], now: datetime) -> ShiftedStream:
    """The webhook bodies with every event time moved by whole days per symbol, so that each
    symbol's last event is in ``(now - 1 day, now]`` (see the module docstring)."""
    now = as_utc(now)
    events = [_event(body) for body in bodies]
    last: dict[Any, datetime] = {}
    for event in events:
        if event is not None:
            symbol = event[0].get("symbol")
            last[symbol] = max(event[1], last.get(symbol, event[1]))
    shifts = {symbol: timedelta(days=(now - at).days) for symbol, at in last.items()}

    shifted: list[bytes] = []
    for body, event in zip(bodies, events, strict=True):
        if event is None:
            shifted.append(body)
            continue
        payload, at = event
        shift = shifts[payload.get("symbol")]
        moved = dict(payload, time=(at + shift).isoformat().replace("+00:00", "Z"))
        trade_id = payload.get("trade_id")
        new_trade_id = _shifted_trade_id(trade_id, shift)
        if isinstance(trade_id, str) and new_trade_id != trade_id:
            moved["trade_id"] = new_trade_id
            alert_id = payload.get("alert_id")
            if isinstance(alert_id, str) and trade_id in alert_id:
                moved["alert_id"] = alert_id.replace(trade_id, new_trade_id)
        shifted.append(json.dumps(moved, separators=(",", ":")).encode())
    return ShiftedStream(shifted, {str(k): v.days for k, v in shifts.items()})
