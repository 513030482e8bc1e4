"""Which client a request comes from, for the per-address limits.

By default the socket peer. Anyone can write X-Forwarded-For, so believing it unconditionally would let one
client claim a fresh address on every request and walk past every per-address limit. Behind proxies that
append the address they saw (nginx, a cloud load balancer, the Heroku or Cloud Foundry router) the peer is
the proxy instead, and every visitor would share one budget; WEBCHAT_TRUSTED_PROXIES says how many such
proxies there are, and the client is the entry that many places from the right: only those entries were
written by proxies we trust, everything to their left came from the client and may be forged.

IPv6 is counted per /64: one subscriber routinely gets a whole /64, so counting single addresses would
hand them ~2^64 budgets. The RFC 7239 `Forwarded` header is not read (the common proxies all append XFF).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

UNKNOWN = "unknown"
"""Bucket for a peer without an address (a Unix socket): they share one budget rather than escape it."""
IPV6_PREFIX = 64

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse(text: str | None) -> Address | None:
    """An address as proxies write it: bare, `[v6]:port` or `v4:port` (some cloud balancers add the port)."""
    text = (text or "").strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def bucket(address: Address | None) -> str:
    """The key one client's budget is counted under."""
    if address is None:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted_proxies: int) -> str:
    """The client's bucket from the peer and every X-Forwarded-For header; pure, so it is tested without a server.

    With fewer entries than trusted proxies (or garbage where the nearest untrusted entry should be) the
    request did not come the configured way, so the peer is used: never an address the client chose.
    """
    if trusted_proxies:
        hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            chosen = parse(hops[-trusted_proxies])
            if chosen is not None:
                return bucket(chosen)
    return bucket(parse(peer))


class ClientAddress:
    """`client_address` for a request, plus one warning when a proxy is evidently in front but not trusted."""

    def __init__(self, trusted_proxies: int) -> None:
        self.trusted_proxies = trusted_proxies
        self.warned = trusted_proxies > 0

    def __call__(self, request: web.Request) -> str:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        if forwarded and not self.warned:
            # Either a client forging the header (ignored: fine) or a proxy we were not told about, in which
            # case every visitor shares the proxy's budget. Said once per process, not per request.
            self.warned = True
            log.warning("webchat_forwarded_for_ignored", peer=request.remote,
                        hint="behind a proxy, set WEBCHAT_TRUSTED_PROXIES to the number of proxies")
        return client_address(request.remote, forwarded, self.trusted_proxies)
