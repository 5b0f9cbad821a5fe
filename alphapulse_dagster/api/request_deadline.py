"""A deadline on a request's *head* for ``alphapulse serve`` (uvicorn's httptools protocol).

uvicorn times out an idle keep-alive connection, but not one that is sending its request
line and headers a byte at a time: such a connection is held for ever, and a few hundred
of them fill the connection cap (``ALPHAPULSE_MAX_CONNECTIONS``) so that real webhooks get
503. The body has its own deadline in the webhook route (408, ``api/webhooks.py``); this
protocol gives the head the same one: from the connection's first byte (or the first
byte of the next request on a keep-alive connection) the headers must be complete
within ``head_timeout`` seconds, else the server answers 408 and closes the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _answer() -> bytes:
    text = b"request head not received in time"
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: " + str(len(text)).encode() + b"\r\n\r\n" + text
    )


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request head."""

    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_head_timer()  # the first byte of the next request on this connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its own deadlines apply
        self.logger.info("request head not received within %g s: closing", self.head_timeout)
        self.transport.write(_answer())
        self.transport.close()


def with_head_timeout(seconds: float) -> type[HeadDeadlineProtocol]:
    """:class:`HeadDeadlineProtocol` with ``head_timeout = seconds`` (for ``uvicorn.run``'s
    ``http=``; uvicorn builds one instance per connection)."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": seconds})
