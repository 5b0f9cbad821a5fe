"""Settings of the HTTP server, from ``ALPHAPULSE_*`` environment variables (SPEC §16).

Read when the app is created (``alphapulse serve``), never at import time. Secrets are
held here and compared in constant time; they are never logged or rendered in ``repr``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alphapulse_dagster.db.engine import WriteTimeouts, database_url
from alphapulse_dagster.webhooks.ingest import MAX_BODY_BYTES
from alphapulse_dagster.webhooks.reject_budget import RejectLimits
from alphapulse_dagster.webhooks.spool import DEFAULT_SPOOL_PATH
from alphapulse_dagster.webhooks.spool import spool_path as env_spool_path
from alphapulse_dagster.webhooks.webhook_payload import DEFAULT_MAX_FUTURE_SECONDS

# TradingView's documented webhook source addresses.
TRADINGVIEW_IPS: tuple[str, ...] = (
    "52.89.214.238",
    "34.212.75.30",
    "54.218.53.128",
    "52.32.178.7",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str | None) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs; the word ``tradingview`` expands to
    :data:`TRADINGVIEW_IPS`. Raises ``ValueError`` naming a bad entry."""
    networks: list[Network] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.lower() == "tradingview":
            networks += [ipaddress.ip_network(ip) for ip in TRADINGVIEW_IPS]
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    """``env[name]`` as a number ≥ ``minimum`` (``default`` when unset). Raises
    ``ValueError`` naming the variable."""
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: not a number: {text!r}") from None
    if not value >= minimum:
        raise ValueError(f"{name}: must be at least {minimum:g}, got {text!r}")
    return value


@dataclass(frozen=True)
class ApiSettings:
    """``allowed_ips`` empty ⇒ any source may post (the secret still applies);
    ``trusted_proxies`` empty ⇒ ``X-Forwarded-For`` is ignored, by the app and by uvicorn.

    Limits: ``max_future_seconds`` — how far past the server's clock an event time may be
    (SPEC §14); ``body_timeout_seconds`` — deadline to receive a request's head, and a
    webhook's whole body (else 408); ``max_connections`` — concurrent connections uvicorn
    serves before answering 503;
    ``keep_alive_seconds`` — how long an idle keep-alive connection is held."""

    database_url: str
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    allowed_ips: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    spool_path: Path = DEFAULT_SPOOL_PATH
    max_body_bytes: int = MAX_BODY_BYTES
    enable_noop: bool = False
    write_timeout: float = 1.0
    db_connect_timeout: int = 2
    write_timeouts: WriteTimeouts = WriteTimeouts()
    reject_limits: RejectLimits = RejectLimits()
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS
    body_timeout_seconds: float = 10.0
    max_connections: int = 1000
    keep_alive_seconds: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """``ALPHAPULSE_DATABASE_URL``, ``ALPHAPULSE_WEBHOOK_SECRET``,
        ``ALPHAPULSE_API_TOKEN``, ``ALPHAPULSE_WEBHOOK_ALLOWED_IPS`` (e.g. ``tradingview``),
        ``ALPHAPULSE_TRUSTED_PROXIES`` (e.g. ``127.0.0.1``), ``ALPHAPULSE_SPOOL_PATH``,
        ``ALPHAPULSE_BENCH_NOOP`` (adds ``POST /webhooks/noop`` for the benchmark).

        Bounded waits (SPEC §14; a webhook answers within ~``write_timeout`` + the spool's
        fsync): ``ALPHAPULSE_WEBHOOK_WRITE_TIMEOUT`` (seconds a group commit may take before
        its batch is spooled, default 1.0), ``ALPHAPULSE_DB_CONNECT_TIMEOUT`` (seconds,
        default 2 — libpq's minimum), ``ALPHAPULSE_DB_LOCK_TIMEOUT_MS`` (default 500) and
        ``ALPHAPULSE_DB_STATEMENT_TIMEOUT_MS`` (default 1000) for the webhook path's writes.

        Reject rows: ``ALPHAPULSE_REJECTS_PER_SOURCE_PER_MINUTE`` (default 60),
        ``ALPHAPULSE_REJECTS_BURST`` (default 20), ``ALPHAPULSE_REJECTS_PER_MINUTE`` (all
        sources, default 1200), ``ALPHAPULSE_REJECTS_MAX_ROWS`` (table cap, default
        100000).

        Limits: ``ALPHAPULSE_MAX_FUTURE_SECONDS`` (300), ``ALPHAPULSE_BODY_TIMEOUT_SECONDS``
        (10), ``ALPHAPULSE_MAX_CONNECTIONS`` (1000), ``ALPHAPULSE_KEEP_ALIVE_SECONDS`` (5)."""
        env = os.environ if environ is None else environ
        return cls(
            database_url=database_url(env.get("ALPHAPULSE_DATABASE_URL")),
            webhook_secret=env.get("ALPHAPULSE_WEBHOOK_SECRET") or None,
            api_token=env.get("ALPHAPULSE_API_TOKEN") or None,
            allowed_ips=parse_networks(env.get("ALPHAPULSE_WEBHOOK_ALLOWED_IPS")),
            trusted_proxies=parse_networks(env.get("ALPHAPULSE_TRUSTED_PROXIES")),
            spool_path=env_spool_path(env),
            enable_noop=_flag(env.get("ALPHAPULSE_BENCH_NOOP")),
            write_timeout=_number(env, "ALPHAPULSE_WEBHOOK_WRITE_TIMEOUT", 1.0, 0.05),
            db_connect_timeout=int(_number(env, "ALPHAPULSE_DB_CONNECT_TIMEOUT", 2, 1)),
            write_timeouts=WriteTimeouts(
                lock_ms=int(_number(env, "ALPHAPULSE_DB_LOCK_TIMEOUT_MS", 500, 1)),
                statement_ms=int(_number(env, "ALPHAPULSE_DB_STATEMENT_TIMEOUT_MS", 1000, 1)),
            ),
            reject_limits=RejectLimits(
                per_source_per_minute=_number(
                    env, "ALPHAPULSE_REJECTS_PER_SOURCE_PER_MINUTE", 60.0, 0
                ),
                burst=int(_number(env, "ALPHAPULSE_REJECTS_BURST", 20, 1)),
                total_per_minute=_number(env, "ALPHAPULSE_REJECTS_PER_MINUTE", 1200.0, 0),
                max_rows=int(_number(env, "ALPHAPULSE_REJECTS_MAX_ROWS", 100_000, 0)),
            ),
            max_future_seconds=_number(
                env, "ALPHAPULSE_MAX_FUTURE_SECONDS", DEFAULT_MAX_FUTURE_SECONDS, 1
            ),
            body_timeout_seconds=_number(env, "ALPHAPULSE_BODY_TIMEOUT_SECONDS", 10.0, 0.1),
            max_connections=int(_number(env, "ALPHAPULSE_MAX_CONNECTIONS", 1000, 1)),
            keep_alive_seconds=_number(env, "ALPHAPULSE_KEEP_ALIVE_SECONDS", 5.0, 0.1),
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """The server-side half of these settings, for ``uvicorn.run``: forwarded headers
        only from the trusted proxies (uvicorn otherwise believes ``X-Forwarded-For`` from
        127.0.0.1 and rewrites the client address before the app's allow-list sees it), the
        connection cap, the keep-alive timeout, and the request-head deadline
        (:mod:`~alphapulse_dagster.api.request_deadline`)."""
        from alphapulse_dagster.api.request_deadline import with_head_timeout

        proxies = [str(network) for network in self.trusted_proxies]
        return {
            "proxy_headers": bool(proxies),
            "forwarded_allow_ips": proxies,
            "limit_concurrency": self.max_connections,
            "timeout_keep_alive": self.keep_alive_seconds,
            # the request head gets the body's deadline (a slow head is answered 408 too)
            "http": with_head_timeout(self.body_timeout_seconds),
        }
