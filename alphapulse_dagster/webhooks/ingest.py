"""Webhook ingestion: body → checked JSON object → validated payload → event, or a reject.

The HTTP route and ``alphapulse replay-webhooks`` (straight into the database) share these
steps, so a payload is accepted or refused the same way on both paths:

1. :func:`parse_body` — UTF-8, a JSON object, at most :data:`MAX_DEPTH` deep, no NUL or
   lone surrogates in strings, finite numbers only (what Postgres ``jsonb`` can store);
2. :func:`check_secret` — constant-time comparison with ``ALPHAPULSE_WEBHOOK_SECRET``;
3. :func:`redact_secrets` — the secret's value removed wherever else it appears;
4. :func:`webhook_event` — the pydantic model of SPEC §16, its semantic checks (§14), and
   the :class:`NewEvent` to append (``signal_id = {symbol}:{trade_id}`` percent-encoded,
   upper-cased ``event_type``, payload without the secret, idempotency key: the hash of
   the canonical payload, ``alert_id`` included).

Every refusal is a :class:`Rejection` (HTTP status, field, reason) and becomes one
``webhook_rejects`` row (:func:`record_reject`) with the body truncated and the secret
redacted by its parsed value, whatever its spelling (``\\u0073…`` escapes included).
Nothing here updates the ``signals`` registry: that is the lifecycle projection.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, insert

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.tables import webhook_rejects
from alphapulse_dagster.sync.events import (
    Appended,
    NewEvent,
    append_events,
    payload_idempotency_key,
)
from alphapulse_dagster.webhooks.webhook_payload import (
    DEFAULT_MAX_FUTURE_SECONDS,
    SOURCE,
    WebhookPayload,
    canonical_payload,
    semantic_problem,
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


def webhook_event(
    raw: dict[str, Any],
    *,
    now: datetime | None = None,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
) -> NewEvent:
    """Validate ``raw`` (SPEC §16, and the semantic checks of §14 against ``now``, default
    the clock) and build the event to append. Raises 422 naming the field."""
    try:
        model = WebhookPayload.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = _field_of(dict(first))
        message = str(first.get("msg", "invalid"))
        if first.get("type") == "missing":
            message = "field required"
        raise Rejection(422, f"{field}: {message}", field) from None
    problem = semantic_problem(model, now or utcnow(), max_future_seconds)
    if problem is not None:
        field, message = problem
        raise Rejection(422, f"{field}: {message}", field)
    return NewEvent(
        source=SOURCE,
        event_type=model.event,
        signal_id=model.signal_id,
        trade_id=model.trade_id,
        symbol=model.symbol,
        event_time=model.time,
        payload=stored_payload(model, raw),
        idempotency_key=payload_idempotency_key(canonical_payload(model, raw)),
    )


def _secret_values(secrets: Iterable[str | None]) -> list[str]:
    return sorted({secret for secret in secrets if secret}, key=len, reverse=True)


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_secrets(value: Any, secrets: Iterable[str | None]) -> Any:
    """A parsed body with every value of a ``secret`` key (at any depth) and every
    occurrence of the given secrets in its strings (keys included) replaced by
    :data:`REDACTED` — what may be stored of a payload."""
    values = _secret_values(secrets)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _redact_text(item, values)
        if isinstance(item, list):
            return [walk(element) for element in item]
        if isinstance(item, dict):
            return {
                _redact_text(str(key), values): REDACTED if key == "secret" else walk(element)
                for key, element in item.items()
            }
        return item

    return walk(value)


def _json_secrets(value: Any) -> list[str]:
    """The string values of every ``secret`` key in a parsed body, at any depth."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "secret" and isinstance(item, str):
                found.append(item)
            found += _json_secrets(item)
    elif isinstance(value, list):
        for item in value:
            found += _json_secrets(item)
    return found


# a JSON string literal, complete or cut off by the end of the text
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)


def _decoded(token: str) -> str | None:
    """A JSON string literal's value; a literal cut off by the end of the text is closed
    first (and a trailing partial escape dropped)."""
    candidates = [token] if token.endswith('"') and len(token) > 1 else []
    candidates += [token + '"', re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", token) + '"']
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, str):
            return value
    return None


def redact_body(body: bytes | str, secrets: Iterable[str | None]) -> str:
    """The body as text for ``webhook_rejects.body``: every given secret replaced — as
    sent, and inside any JSON string literal by its *decoded* value, so an escaped
    spelling (``"\\u0073…"``) is caught too — NULs replaced (Postgres ``text`` cannot
    hold them), truncated to :data:`REJECT_BODY_CHARS` characters. The rest of the body
    is kept as sent."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    values = _secret_values(secrets)
    if values:

        def literal(match: re.Match[str]) -> str:
            token = match.group(0)
            decoded = _decoded(token)
            if decoded is None:  # a bad escape: nothing readable may hide a secret
                return token if "\\" not in token else f'"{REDACTED}"'
            if not token.endswith('"') or len(token) == 1:
                # cut off (a body that did not arrive whole): a secret's start counts
                if decoded and any(secret.startswith(decoded) for secret in values):
                    return f'"{REDACTED}'
            redacted = _redact_text(decoded, values)
            return token if redacted == decoded else json.dumps(redacted, ensure_ascii=False)

        text = _redact_text(_JSON_STRING.sub(literal, text), values)
    text = text.replace("\x00", "\ufffd")
    if len(text) > REJECT_BODY_CHARS:
        text = text[:REJECT_BODY_CHARS] + "…[truncated]"
    return text


def sent_secrets(body: bytes) -> list[str]:
    """The ``secret`` values (at any depth) a refused body carried, to redact them."""
    try:
        parsed = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return []
    try:
        return _json_secrets(parsed)
    except RecursionError:  # pragma: no cover - json.loads refuses deeper nesting first
        return []


def redact_rejection(rejection: Rejection, secrets: Iterable[str | None]) -> Rejection:
    """``rejection`` with the secrets taken out of its reason and field (both are echoed
    in the response and stored)."""
    values = list(secrets)
    field = redact_body(rejection.field, values) if rejection.field else rejection.field
    return replace(rejection, reason=redact_body(rejection.reason, values), field=field)


def reject_row(
    rejection: Rejection,
    body: bytes,
    *,
    received_at: datetime,
    source_address: str | None,
    secret: str | None,
) -> dict[str, Any]:
    """The ``webhook_rejects`` row for ``rejection`` (secret redacted, body truncated)."""
    secrets = [secret, *sent_secrets(body)]
    rejection = redact_rejection(rejection, secrets)
    return {
        "received_at": received_at,
        "source_address": (source_address or "")[:64] or None,
        "status_code": rejection.status_code,
        "field": (rejection.field or "")[:128] or None,
        "reason": rejection.reason[:1000],
        "body": redact_body(body, secrets),
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
        event = webhook_event(redact_secrets(raw, [secret]), now=now)
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
