"""Webhook ingestion: body → checked JSON object → validated payload → event, or a reject.

The HTTP route and ``alphapulse replay-webhooks`` (straight into the database) share these
steps, so a payload is accepted or refused the same way on both paths:

1. :func:`parse_body` — UTF-8, a JSON object, at most :data:`MAX_DEPTH` deep, no NUL or
   lone surrogates in strings, finite numbers only (what Postgres ``jsonb`` can store);
2. :func:`check_secret` — constant-time comparison with ``ALPHAPULSE_WEBHOOK_SECRET``;
3. :func:`webhook_event` — the pydantic model of SPEC §16 and the :class:`NewEvent` to
   append (``signal_id = {symbol}:{trade_id}``, upper-cased ``event_type``, payload
   without the secret, idempotency key from ``alert_id`` or the canonical payload).

Every refusal is a :class:`Rejection` (HTTP status, field, reason) and becomes one
``webhook_rejects`` row (:func:`record_reject`) with the body truncated and the secret
redacted. Nothing here updates the ``signals`` registry: that is the lifecycle projection.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, insert

from alphapulse_dagster.db.tables import webhook_rejects
from alphapulse_dagster.sync.events import (
    Appended,
    NewEvent,
    append_events,
    payload_idempotency_key,
)
from alphapulse_dagster.webhooks.webhook_payload import (
    SOURCE,
    WebhookPayload,
    identity_payload,
    stored_payload,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
REJECT_BODY_CHARS = 4000
REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class Rejection(Exception):
    """A refused webhook: ``status_code`` (401, 403, 413, 422), the offending ``field`` when
    there is one (dotted path, e.g. ``targets.1``), and a human ``reason``."""

    status_code: int
    reason: str
    field: str | None = None

    def detail(self) -> Any:
        """The response's ``detail``: FastAPI's shape for 422 (naming the field), a string
        otherwise."""
        if self.status_code == 422:
            loc: list[str | int] = ["body"]
            if self.field:
                loc += [int(p) if p.isdigit() else p for p in self.field.split(".")]
            return [{"loc": loc, "msg": self.reason, "type": "value_error"}]
        return self.reason


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_json(value: Any, path: str, depth: int) -> None:
    """Refuse what JSON allows but the log cannot store faithfully."""
    if depth > MAX_DEPTH:
        raise Rejection(422, f"nested deeper than {MAX_DEPTH} levels", path or "body")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Rejection(422, "number out of range", path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path or "body")
            _check_json(item, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}.{index}" if path else str(index), depth + 1)


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise Rejection(422, "NUL character in string", path or "body")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Rejection(422, "invalid unicode (lone surrogate) in string", path or "body") from None


def parse_body(body: bytes) -> dict[str, Any]:
    """The webhook body (``application/json`` or ``text/plain`` — TradingView sends the
    alert message as typed) as a JSON object. Raises :class:`Rejection` (413, 422)."""
    if len(body) > MAX_BODY_BYTES:
        raise Rejection(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejection(422, "body is not UTF-8 text", "body") from None
    if not text.strip():
        raise Rejection(422, "empty body; expected a JSON object", "body")
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise Rejection(422, f"nested deeper than {MAX_DEPTH} levels", "body") from None
    except ValueError as exc:  # JSONDecodeError, too-long integers, NaN/Infinity
        raise Rejection(422, f"body is not valid JSON: {exc}", "body") from None
    if not isinstance(parsed, dict):
        raise Rejection(422, f"expected a JSON object, got {type(parsed).__name__}", "body")
    _check_json(parsed, "", 1)
    return parsed


def check_secret(payload: dict[str, Any], expected: str | None) -> None:
    """Constant-time comparison of ``payload["secret"]`` with ``expected``; no expected
    secret ⇒ anything passes (the server warns once at startup). Raises 401."""
    if not expected:
        return
    sent = payload.get("secret")
    if not isinstance(sent, str) or not sent:
        raise Rejection(401, "missing secret", "secret")
    if not hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8")):
        raise Rejection(401, "wrong secret", "secret")


def _field_of(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "body"


def webhook_event(raw: dict[str, Any]) -> NewEvent:
    """Validate ``raw`` (SPEC §16) and build the event to append. Raises 422."""
    try:
        model = WebhookPayload.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = _field_of(dict(first))
        message = str(first.get("msg", "invalid"))
        if first.get("type") == "missing":
            message = "field required"
        raise Rejection(422, f"{field}: {message}", field) from None
    payload = stored_payload(model, raw)
    return NewEvent(
        source=SOURCE,
        event_type=model.event,
        signal_id=model.signal_id,
        trade_id=model.trade_id,
        symbol=model.symbol,
        event_time=model.time,
        payload=payload,
        idempotency_key=payload_idempotency_key(identity_payload(payload)),
    )


def redact_body(body: bytes | str, secrets: Iterable[str | None]) -> str:
    """The body as text for ``webhook_rejects.body``: every given secret replaced, NULs
    replaced (Postgres ``text`` cannot hold them), truncated to
    :data:`REJECT_BODY_CHARS` characters."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
            # a JSON-escaped spelling of the same secret
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                text = text.replace(escaped, REDACTED)
    text = text.replace("\x00", "\ufffd")
    if len(text) > REJECT_BODY_CHARS:
        text = text[:REJECT_BODY_CHARS] + "…[truncated]"
    return text


def sent_secret(body: bytes) -> str | None:
    """The ``secret`` a refused body carried, if it can be found, to redact it."""
    try:
        parsed = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("secret"), str):
        return str(parsed["secret"])
    return None


def reject_row(
    rejection: Rejection,
    body: bytes,
    *,
    received_at: datetime,
    source_address: str | None,
    secret: str | None,
) -> dict[str, Any]:
    """The ``webhook_rejects`` row for ``rejection`` (secret redacted, body truncated)."""
    return {
        "received_at": received_at,
        "source_address": (source_address or "")[:64] or None,
        "status_code": rejection.status_code,
        "field": (rejection.field or "")[:128] or None,
        "reason": redact_body(rejection.reason, [secret])[:1000],
        "body": redact_body(body, [secret, sent_secret(body)]),
    }


def record_reject(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(insert(webhook_rejects).values(**row))


@dataclass(frozen=True)
class IngestResult:
    """Outcome of one body: ``appended`` (event id, duplicate flag) or ``rejection``."""

    appended: Appended | None = None
    rejection: Rejection | None = None


def ingest_body(
    connection: Connection,
    body: bytes,
    *,
    now: datetime,
    secret: str | None = None,
    source_address: str | None = None,
) -> IngestResult:
    """The synchronous path (``replay-webhooks`` without ``--url``): parse, check, validate
    and append one body in the caller's transaction, or write its reject row."""
    try:
        raw = parse_body(body)
        check_secret(raw, secret)
        event = webhook_event(raw)
    except Rejection as rejection:
        record_reject(
            connection,
            reject_row(
                rejection, body, received_at=now, source_address=source_address, secret=secret
            ),
        )
        return IngestResult(rejection=rejection)
    [appended] = append_events(connection, [event], now)
    return IngestResult(appended=appended)
