"""``POST /webhooks/tradingview`` — land a TradingView alert durably, answer fast.

Order of checks: a source whose refusals are rationed is turned away before this route
(429, ``api/flood_gate.py``) → body size (413) and body deadline (408) → source address
allow-list (403) → JSON object (422) → secret (401) → payload model and semantics (422) →
group commit (200 accepted / duplicate) or spool (503). Every refusal offers a
``webhook_rejects`` row (secret redacted; rationed, ``api/rejects.py``); nothing here
raises a 500.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from alphapulse_dagster.api.flood_gate import WEBHOOK_PATH
from alphapulse_dagster.api.rejects import RejectRecorder
from alphapulse_dagster.api.settings import ApiSettings
from alphapulse_dagster.api.source_address import contains, source_address
from alphapulse_dagster.api.writer import EventWriter
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.webhooks.ingest import (
    Rejection,
    check_secret,
    parse_body,
    redact_rejection,
    redact_secrets,
    reject_row,
    sent_secrets,
    webhook_event,
)
from alphapulse_dagster.webhooks.webhook_payload import WebhookPayload

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])


class WebhookAnswer(BaseModel):
    status: Literal["accepted", "duplicate"]
    event_id: int


class ErrorAnswer(BaseModel):
    detail: Any


_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The alert message. TradingView sends `application/json` when the "
        "message parses as JSON and `text/plain` otherwise; both are accepted.",
        "content": {
            "application/json": {"schema": WebhookPayload.model_json_schema()},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": WebhookAnswer, "description": "committed (`accepted`) or already in the log"},
    401: {"model": ErrorAnswer, "description": "missing or wrong secret"},
    403: {"model": ErrorAnswer, "description": "source address not in the allow-list"},
    408: {
        "model": ErrorAnswer,
        "description": "body not received within ALPHAPULSE_BODY_TIMEOUT_SECONDS (10 s)",
    },
    413: {"model": ErrorAnswer, "description": "body larger than 64 KiB"},
    429: {
        "model": ErrorAnswer,
        "description": "this source address's refusals are rationed (by default past a "
        "burst of 20, then 60 a minute): answered 0.25 s after the request head, body unread; "
        "`Retry-After` says when to try again. Never for TradingView's "
        "webhook addresses, the allow-list or loopback (api/flood_gate.py)",
    },
    422: {
        "model": ErrorAnswer,
        "description": "invalid payload; `detail` names the field (a wrong type, an event "
        "time more than max_future_seconds ahead, a stop or target on the wrong side of the "
        "entry, a control or invisible character in symbol or trade_id)",
    },
    503: {
        "model": ErrorAnswer,
        "description": "storage unavailable: `status` `spooled` (durable, replayed in arrival "
        "order) or `unavailable` (spool not writable either: not stored, send again)",
    },
}


class BodyTimeout(Exception):
    """The body did not arrive in time; ``partial`` is what did."""

    def __init__(self, seconds: float, partial: bytes) -> None:
        super().__init__(seconds)
        self.rejection = Rejection(408, f"body not received within {seconds:g} s")
        self.partial = partial


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The body, refusing (413) as soon as it exceeds ``limit`` bytes — without reading a
    declared-too-large body at all — and (408, :class:`BodyTimeout`) when the whole body
    has not arrived ``timeout`` seconds after the request began: a client trickling a byte
    at a time must not hold a connection for ever."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Rejection(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0

    async def receive() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejection(413, f"body larger than {limit} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), timeout)
    except TimeoutError:
        raise BodyTimeout(timeout or 0.0, b"".join(chunks)) from None
    return b"".join(chunks)


def _refusal(rejection: Rejection) -> JSONResponse:
    headers = {"WWW-Authenticate": "Secret"} if rejection.status_code == 401 else None
    if rejection.status_code == 408:
        # the rest of the body may still be on its way: end the connection
        headers = {"Connection": "close"}
    return JSONResponse(
        {"detail": rejection.detail()}, status_code=rejection.status_code, headers=headers
    )


@router.post(
    WEBHOOK_PATH,
    summary="Receive a TradingView alert (SPEC §16 payload)",
    response_model=WebhookAnswer,
    responses=_RESPONSES,
    openapi_extra=_REQUEST_BODY,
)
async def tradingview_webhook(request: Request) -> Response:
    received_at = utcnow()
    settings: ApiSettings = request.app.state.settings
    writer: EventWriter = request.app.state.writer
    peer = request.client.host if request.client else None
    address = source_address(peer, request.scope["headers"], settings.trusted_proxies)
    body = b""
    try:
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
        if settings.allowed_ips and not contains(settings.allowed_ips, address):
            raise Rejection(403, f"source address {address} is not allowed", "source_address")
        raw = parse_body(body)
        check_secret(raw, settings.webhook_secret)
        event = webhook_event(
            redact_secrets(raw, [settings.webhook_secret]),
            now=received_at,
            max_future_seconds=settings.max_future_seconds,
        )
        event = replace(event, received_at=received_at)
    except ClientDisconnect:
        return Response(status_code=400)
    except BodyTimeout as timeout:
        return await _refuse(
            request, timeout.rejection, timeout.partial, received_at, address, settings
        )
    except Rejection as rejection:
        return await _refuse(request, rejection, body, received_at, address, settings)
    except Exception:  # a payload must never produce a 500
        log.exception("unexpected error validating a webhook")
        unexpected = Rejection(422, "unprocessable payload", "body")
        return await _refuse(request, unexpected, body, received_at, address, settings)

    outcome = await writer.submit(event)
    if outcome.appended is not None:
        status = "duplicate" if outcome.appended.duplicate else "accepted"
        return JSONResponse({"status": status, "event_id": outcome.appended.event_id})
    if outcome.refused:
        unstorable = Rejection(422, f"payload could not be stored ({outcome.error})", "body")
        return await _refuse(request, unstorable, body, received_at, address, settings)
    detail = (
        "storage unavailable; event spooled and will be replayed"
        if outcome.spooled
        else "storage unavailable"
    )
    return JSONResponse(
        {"detail": detail, "status": "spooled" if outcome.spooled else "unavailable"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _refuse(
    request: Request,
    rejection: Rejection,
    body: bytes,
    received_at: Any,
    address: str | None,
    settings: ApiSettings,
) -> JSONResponse:
    rejection = redact_rejection(rejection, [settings.webhook_secret, *sent_secrets(body)])
    """Answer the refusal; its ``webhook_rejects`` row is queued (rationed per source and
    capped, written in batches off the valid events' path: :mod:`.rejects`)."""
    recorder: RejectRecorder = request.app.state.rejects
    recorded = recorder.offer(
        address,
        lambda: reject_row(
            rejection,
            body,
            received_at=received_at,
            source_address=address,
            secret=settings.webhook_secret,
        ),
    )
    if recorded:
        log.info(
            "webhook refused %d from %s: %s",
            rejection.status_code,
            address,
            rejection.field or "-",
        )
    return _refusal(rejection)


@router.post("/webhooks/noop", include_in_schema=False)
async def noop_webhook(request: Request) -> Response:
    """Benchmark baseline (only with ``ALPHAPULSE_BENCH_NOOP=1``): the same request path —
    read, parse, check the secret, validate — without touching storage."""
    settings: ApiSettings = request.app.state.settings
    if not settings.enable_noop:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    try:
        raw = parse_body(
            await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
        )
        check_secret(raw, settings.webhook_secret)
        webhook_event(
            redact_secrets(raw, [settings.webhook_secret]),
            max_future_seconds=settings.max_future_seconds,
        )
    except BodyTimeout as timeout:
        return _refusal(timeout.rejection)
    except Rejection as rejection:
        return _refusal(rejection)
    return JSONResponse({"status": "accepted", "event_id": 0})
