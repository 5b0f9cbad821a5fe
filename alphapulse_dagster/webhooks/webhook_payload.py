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

Beyond types, a payload must make sense (SPEC §14), or it is a 422 naming the field
(:func:`semantic_problem`): its time at most ``max_future_seconds`` ahead of the server's
clock; a LONG's stop below its entry and every target above it (SHORT mirrored); no
control or invisible formatting characters (Unicode Cc/Cf, e.g. an RTL override) in
``symbol`` or ``trade_id``, which name the signal on the desk's screen.
"""

from __future__ import annotations

import math
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from alphapulse_dagster.clock import parse_utc_time
from alphapulse_dagster.direction import LONG, Spelling, normalise_direction
from alphapulse_dagster.market.timeframes import UnknownTimeframe, normalise_interval
from alphapulse_dagster.sync.events import EventType

Trend = Literal["BULLISH", "BEARISH", "NEUTRAL"]
ExitReason = Literal["TARGET", "STOP", "BREAKEVEN", "MANUAL"]

SOURCE = "tradingview"
MAX_SYMBOL_LENGTH = 40
MAX_TRADE_ID_LENGTH = 80
# signal_id (after percent-encoding) must fit signals.signal_id
MAX_SIGNAL_ID_LENGTH = 128
DEFAULT_MAX_FUTURE_SECONDS = 300.0
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


def _id_part(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def tradingview_signal_id(symbol: str, trade_id: str) -> str:
    """``{symbol}:{trade_id}`` with ``%`` and ``:`` percent-encoded in each part (SPEC §16),
    so the first ``:`` always separates the parts and two different pairs never share an
    id (``X`` + ``a:b`` → ``X:a%3Ab``; ``X:a`` + ``b`` → ``X%3Aa:b``). Ordinary ids
    (``BTCUSDT:20240101_120000_LONG``, ``NQ1!:…``) are unchanged."""
    return f"{_id_part(symbol)}:{_id_part(trade_id)}"


def _visible_text(value: Any) -> Any:
    """Refuse control and invisible formatting characters (Unicode Cc, Cf): an RTL
    override or a zero-width joiner makes two different ids look the same."""
    if isinstance(value, str):
        for char in value:
            if unicodedata.category(char) in ("Cc", "Cf"):
                raise ValueError(
                    f"contains a control or invisible formatting character (U+{ord(char):04X})"
                )
    return value


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
    trade_id: Annotated[
        str, Field(min_length=1, max_length=MAX_TRADE_ID_LENGTH), AfterValidator(_visible_text)
    ] = Field(
        description="indicator id, usually YYYYMMDD_HHMMSS_<BULLISH|BEARISH|LONG|SHORT>; "
        "no control or invisible formatting characters (Unicode Cc/Cf)"
    )
    symbol: Annotated[
        str, Field(min_length=1, max_length=MAX_SYMBOL_LENGTH), AfterValidator(_visible_text)
    ] = Field(description="e.g. BTCUSDT, NQ1!; no control or invisible formatting characters")
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
    ] = Field(
        description="event time: ISO-8601 or epoch milliseconds, UTC; from 2000-01-01 up to "
        "max_future_seconds (default 300, ALPHAPULSE_MAX_FUTURE_SECONDS) past the server's "
        "clock, and before 2100-01-01"
    )
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
    alert_id: str | int | None = Field(
        default=None,
        description="part of the idempotency hash (never a replacement for it): two alerts "
        "differing only in alert_id are two events",
    )

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
        """``{symbol}:{trade_id}``, each part percent-encoded (:func:`tradingview_signal_id`)."""
        return tradingview_signal_id(self.symbol, self.trade_id)


def semantic_problem(
    model: WebhookPayload,
    now: datetime,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
) -> tuple[str, str] | None:
    """The first way a well-typed payload makes no sense, as (field, message), or None.

    - ``time`` more than ``max_future_seconds`` after ``now`` (a signal dated 2099 would
      stay PENDING for ever);
    - ``stop_loss`` not below ``entry_price`` for a LONG (BULLISH), not above for a SHORT
      (BEARISH); a target (``targets.N``, 0-based) not above the entry for a LONG, not
      below for a SHORT — checked when the payload carries the direction and the entry;
    - the signal id longer than :data:`MAX_SIGNAL_ID_LENGTH` after percent-encoding."""
    if model.time > now + timedelta(seconds=max_future_seconds):
        return "time", (
            f"more than {max_future_seconds:g} s in the future "
            f"({model.time.isoformat()} against the server's {now.isoformat()})"
        )
    if model.direction is not None and model.entry_price is not None:
        side = normalise_direction(model.direction)
        long = side == LONG
        entry = model.entry_price
        stop = model.stop_loss
        if stop is not None and (stop >= entry if long else stop <= entry):
            where = "below" if long else "above"
            return "stop_loss", f"a {side} stop must be {where} the entry ({stop:g} vs {entry:g})"
        for index, target in enumerate(model.targets or []):
            if target <= entry if long else target >= entry:
                where = "above" if long else "below"
                return f"targets.{index}", (
                    f"a {side} target must be {where} the entry ({target:g} vs {entry:g})"
                )
    if len(model.signal_id) > MAX_SIGNAL_ID_LENGTH:
        return "trade_id", (
            f"signal id {model.signal_id!r} is longer than {MAX_SIGNAL_ID_LENGTH} characters "
            "after percent-encoding"
        )
    return None


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


def canonical_payload(model: WebhookPayload, raw: dict[str, Any]) -> dict[str, Any]:
    """What identifies the event (the idempotency hash, SPEC §8): the sent object without
    ``secret`` — every other key as sent, ``alert_id``, ``id`` and keys ending in ``_raw``
    included — with the known fields normalised and ``time`` as ISO-8601 UTC, so ``"60"``
    and ``"1h"`` (or epoch ms and ISO) of one alert are one event, and any other
    difference makes two."""
    payload = {key: value for key, value in raw.items() if key != "secret"}
    for key in _NORMALISED_KEYS:
        if key in raw:
            payload[key] = getattr(model, key)
    payload["time"] = model.time.isoformat().replace("+00:00", "Z")
    return payload


# the sent spellings :func:`stored_payload` adds beside the normalised values
DERIVED_KEYS = ("time_raw", "timeframe_raw")


def stored_payload(model: WebhookPayload, raw: dict[str, Any]) -> dict[str, Any]:
    """The payload as it goes into ``signal_events.payload``: :func:`canonical_payload`
    plus the sent spellings of ``time``/``timeframe`` as ``time_raw``/``timeframe_raw``
    when they differ (unless the sender used those keys itself: its values are kept)."""
    payload = canonical_payload(model, raw)
    if payload["time"] != raw.get("time") and "time_raw" not in raw:
        payload["time_raw"] = raw.get("time")
    if "timeframe" in raw and raw["timeframe"] != model.timeframe and "timeframe_raw" not in raw:
        payload["timeframe_raw"] = raw["timeframe"]
    return payload
