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

Once the source's bucket refills (one row's worth every ``60 / per_source_per_minute``
seconds) its next request is read and judged as usual.

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

import math
from functools import lru_cache
from typing import Any

from alphapulse_dagster.api.settings import TRADINGVIEW_IPS, ApiSettings, parse_networks
from alphapulse_dagster.api.source_address import contains, source_address
from alphapulse_dagster.webhooks.reject_budget import RejectBudget

WEBHOOK_PATH = "/webhooks/tradingview"

LOOPBACK = ("127.0.0.0/8", "::1")

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
        if self.never_turned_away(source) or not self.budget.turn_away(source):
            return await self.app(scope, receive, send)
        await send({"type": "http.response.start", "status": 429, "headers": self.headers})
        await send({"type": "http.response.body", "body": _BODY})
