"""Who sent a request: the one rule, used by the webhook route and the flood gate.

The direct peer, unless that peer is one of ``ALPHAPULSE_TRUSTED_PROXIES``: then the
right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy (the left part of
the header is whatever the client chose to send).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from alphapulse_dagster.api.settings import Network


def contains(networks: tuple[Network, ...], address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def source_address(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: tuple[Network, ...]
) -> str | None:
    """The client's address, from the direct ``peer`` and the request's raw (ASGI)
    ``headers``; the headers are read only when the peer is a trusted proxy."""
    if not trusted or not contains(trusted, peer):
        return peer
    forwarded = b",".join(value for name, value in headers if name == b"x-forwarded-for")
    hops = [hop.strip() for hop in forwarded.decode("latin-1").split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not contains(trusted, hop):
            return hop
    return hops[0] if hops else peer
