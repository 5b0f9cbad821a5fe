"""Turn a flooding source away before its request is read (SPEC §13/§14, issue 13 item 7).

A pure ASGI layer in front of FastAPI's routing and validation. A request to the webhook
from a source whose reject rows are rationed (:meth:`RejectBudget.turn_away`: more than
``burst`` refusals, then more than ``per_source_per_minute``) is answered ``429`` from its
head alone — body unread by the app, no parsing, no row, no log line. It is counted in
``rejects_dropped``.

The connection is kept: uvicorn's HTTP parser skips the rest of the body without handing
it to anyone, and the next request on the connection is read as usual; a body that never
comes is bounded by the keep-alive timeout, one trickled in by the head deadline
(``api/request_deadline.py``). Closing instead would make every turned-away request cost
the server a new connection (accept, protocol set-up, a TIME_WAIT socket); tried in the
benchmark, the flood's rate then swung between ~2,400 and ~200 requests/s, bound by
connection churn rather than by the server.

The 429 is sent ``ANSWER_DELAY_SECONDS`` (0.25 s) after the head arrived, as nginx's
``limit_req`` delays excess requests: the connection is not read meanwhile (uvicorn reads
a pipelined request only once the previous one is answered), so each connection of a
rationed source is served at most 4 times a second. Measured without the delay, a
16-connection flood of immediate 429s kept the one event loop saturated (13,000+ answers
a second) and valid webhooks' p99 rose ×4. The limit of this defence: a flood spread over
many connections is bounded only by the connection cap (``ALPHAPULSE_MAX_CONNECTIONS`` ×
4 a second), and one spread over many addresses gets each address's burst read. A waiting
429 holds no more than its connection, which the flood holds anyway.

Once the source's bucket refills (one row's worth every ``60 / per_source_per_minute``
seconds) its next request is read and judged as usual — one request per row's worth: a
request let through holds that row in reserve until it is answered, so the flood's other
connections are still turned away meanwhile.

The trade-off: the budget is per source address, so a sender sharing a flooding address
(one NAT) is turned away with it while the flood lasts. Never turned away:

- TradingView's webhook addresses and the allow-list: TradingView sends every user's
  alerts from the same four addresses, and one user's broken alerts must not lock out
  another's;
- loopback: a reverse proxy on this machine not named in ``ALPHAPULSE_TRUSTED_PROXIES``
  makes every sender look like 127.0.0.1, and turning that away would turn everyone away
  (such a set-up gets no gate: every request is read and judged, as before).
"""

from __future__ import annotations

import asyncio
import math
from functools import lru_cache
from typing import Any

from alphapulse_dagster.api.settings import TRADINGVIEW_IPS, ApiSettings, parse_networks
from alphapulse_dagster.api.source_address import contains, source_address
from alphapulse_dagster.webhooks.reject_budget import RejectBudget

WEBHOOK_PATH = "/webhooks/tradingview"

LOOPBACK = ("127.0.0.0/8", "::1")
ANSWER_DELAY_SECONDS = 0.25

_BODY = b'{"detail":"too many refused requests from this address; try again later"}'


class FloodGate:
    """ASGI middleware: ``app.add_middleware(FloodGate, budget=…, settings=…)``."""

    def __init__(self, app: Any, budget: RejectBudget, settings: ApiSettings) -> None:
        self.app = app
        self.budget = budget
        self.trusted = settings.trusted_proxies
        never = settings.allowed_ips + parse_networks(",".join([*TRADINGVIEW_IPS, *LOOPBACK]))
        self.never_turned_away = lru_cache(maxsize=4096)(lambda source: contains(never, source))
        per_minute = settings.reject_limits.per_source_per_minute
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_BODY)).encode()),
        ]
        if per_minute > 0:
            self.headers.append((b"retry-after", str(math.ceil(60 / per_minute)).encode()))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH:
            return await self.app(scope, receive, send)
        client = scope.get("client")
        source = source_address(client[0] if client else None, scope["headers"], self.trusted)
        if self.never_turned_away(source):
            return await self.app(scope, receive, send)
        if not self.budget.turn_away(source):
            with self.budget.reading(source):  # no await since turn_away: one decision
                return await self.app(scope, receive, send)
        await asyncio.sleep(ANSWER_DELAY_SECONDS)  # back-pressure on this connection
        await send({"type": "http.response.start", "status": 429, "headers": self.headers})
        await send({"type": "http.response.body", "body": _BODY})
