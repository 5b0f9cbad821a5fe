"""The TradingView webhook payload of SPEC §16, as a pydantic model, and its normalisation.

What is normalised (and why): ``event`` and the enumerations are upper-cased (TradingView
users type them by hand); ``timeframe`` becomes ours (``60`` → ``1h``, ``1D`` → ``1d``)
with the sent spelling kept as ``timeframe_raw``; ``time`` (ISO-8601 or epoch
milliseconds, UTC) becomes an ISO-8601 UTC string with the sent value kept as
``time_raw``. Prices are floats in quote currency; ``mfe``/``mae`` are R multiples ≥ 0.

Only the fields every event carries are required (``event``, ``trade_id``, ``symbol``,
``time``). The fields SPEC §16 lists per event type are optional here on purpose: a
missing entry price or HTF alignment is a *gap* that the hybrid sync detects, fills from a
lower tier and scores — refusing the event would lose the part that did arrive. A field
that is present must have the right type and range, or the event is refused with a 422
naming it. Unknown keys are kept in the stored payload.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from alphapulse_dagster.clock import parse_utc_time
from alphapulse_dagster.direction import Spelling
from alphapulse_dagster.market.timeframes import UnknownTimeframe, normalise_interval
from alphapulse_dagster.sync.events import EventType

Trend = Literal["BULLISH", "BEARISH", "NEUTRAL"]
ExitReason = Literal["TARGET", "STOP", "BREAKEVEN", "MANUAL"]

SOURCE = "tradingview"
# signal_id = "{symbol}:{trade_id}" must fit signals.signal_id (128 characters)
MAX_SYMBOL_LENGTH = 40
MAX_TRADE_ID_LENGTH = 80
# epoch-millisecond sanity range: catches epoch *seconds* sent by mistake
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _number(value: Any) -> Any:
    """Numbers, or strings that are numbers (a quoted ``"{{close}}"``); never booleans."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def parse_event_time(value: Any) -> datetime:
    """ISO-8601 (``Z``, an offset, or naive = UTC) or epoch milliseconds (number or digit
    string, TradingView's ``timenow``) → an aware UTC datetime in 2000–2100
    (:func:`~alphapulse_dagster.clock.parse_utc_time` plus the range)."""
    if isinstance(value, datetime):
        raise ValueError("must be ISO-8601 or epoch milliseconds")
    parsed = parse_utc_time(value)
    if not _EARLIEST <= parsed < _LATEST:
        raise ValueError(
            "out of range (2000..2100); epoch values must be in milliseconds, not seconds"
        )
    return parsed


def _timeframe(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a TradingView interval (15, 60, 240, D, 1D) or 15m/1h/4h/1d")
    try:
        return normalise_interval(str(value))
    except UnknownTimeframe as exc:
        raise ValueError(str(exc)) from None


def _alignment(value: Any) -> Any:
    """Keys are timeframes in any spelling (normalised when known), values trends."""
    if not isinstance(value, dict):
        return value
    normalised: dict[Any, Any] = {}
    for key, trend in value.items():
        try:
            key = normalise_interval(str(key))
        except UnknownTimeframe:
            pass
        normalised[key] = _upper(trend)
    return normalised


PositivePrice = Annotated[float, Field(gt=0, allow_inf_nan=False), BeforeValidator(_number)]
RMultiple = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_number)]
ShortText = Annotated[str, Field(min_length=1, max_length=32)]


class WebhookPayload(BaseModel):
    """One TradingView alert message (SPEC §16). Unknown keys are allowed and kept."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, strict=False)

    secret: Any = Field(default=None, description="shared secret; checked, never stored")
    event: Annotated[EventType, BeforeValidator(_upper)]
    trade_id: Annotated[str, Field(min_length=1, max_length=MAX_TRADE_ID_LENGTH)] = Field(
        description="indicator id, usually YYYYMMDD_HHMMSS_<BULLISH|BEARISH|LONG|SHORT>"
    )
    symbol: Annotated[str, Field(min_length=1, max_length=MAX_SYMBOL_LENGTH)]
    time: Annotated[
        datetime,
        BeforeValidator(parse_event_time),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "format": "date-time"},
                    {"type": "integer", "description": "epoch milliseconds"},
                ]
            }
        ),
    ] = Field(description="event time: ISO-8601 or epoch milliseconds, UTC")
    timeframe: Annotated[str | None, BeforeValidator(_timeframe)] = None
    direction: Annotated[Spelling | None, BeforeValidator(_upper)] = None
    htf_alignment: Annotated[dict[str, Trend] | None, BeforeValidator(_alignment)] = None
    session: ShortText | None = None
    market_state: ShortText | None = None
    entry_price: PositivePrice | None = None
    stop_loss: PositivePrice | None = None
    targets: Annotated[list[PositivePrice] | None, Field(max_length=20)] = None
    mfe: RMultiple | None = Field(default=None, description="R multiples")
    mae: RMultiple | None = Field(default=None, description="R multiples")
    highest: PositivePrice | None = None
    lowest: PositivePrice | None = None
    exit_price: PositivePrice | None = None
    exit_reason: Annotated[ExitReason | None, BeforeValidator(_upper)] = None
    reason: Annotated[str | None, Field(max_length=500)] = None
    alert_id: str | int | None = Field(default=None, description="idempotency key")

    @field_validator("alert_id", mode="before")
    @classmethod
    def _short_alert_id(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | None):
            raise ValueError("must be a string or an integer")
        if value is not None and len(str(value)) > 100:
            raise ValueError("at most 100 characters")
        return value

    @property
    def signal_id(self) -> str:
        """``{symbol}:{trade_id}`` (SPEC §16)."""
        return f"{self.symbol}:{self.trade_id}"


# Keys whose normalised value replaces the sent one in the stored payload.
_NORMALISED_KEYS = (
    "event",
    "trade_id",
    "symbol",
    "timeframe",
    "direction",
    "htf_alignment",
    "session",
    "market_state",
    "entry_price",
    "stop_loss",
    "targets",
    "mfe",
    "mae",
    "highest",
    "lowest",
    "exit_price",
    "exit_reason",
    "reason",
    "alert_id",
)


def stored_payload(model: WebhookPayload, raw: dict[str, Any]) -> dict[str, Any]:
    """The payload as it goes into ``signal_events.payload``: the sent object without
    ``secret``, known fields normalised, ``time`` as ISO-8601 UTC, and the sent spellings of
    ``time``/``timeframe`` kept as ``time_raw``/``timeframe_raw`` when they differ."""
    payload = {key: value for key, value in raw.items() if key != "secret"}
    for key in _NORMALISED_KEYS:
        if key in raw:
            payload[key] = getattr(model, key)
    payload["time"] = model.time.isoformat().replace("+00:00", "Z")
    if payload["time"] != raw.get("time"):
        payload["time_raw"] = raw.get("time")
    if "timeframe" in raw and raw["timeframe"] != model.timeframe:
        payload["timeframe_raw"] = raw["timeframe"]
    return payload


def identity_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a stored payload that identifies the event for the idempotency hash:
    without the ``*_raw`` spellings, so ``"60"`` and ``"1h"`` (or epoch ms and ISO) of the
    same alert are the same event."""
    return {key: value for key, value in payload.items() if not key.endswith("_raw")}
