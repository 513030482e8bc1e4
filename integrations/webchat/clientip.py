"""Which client a request comes from, for the per-address limits.

By default the socket peer. Anyone can write X-Forwarded-For, so believing it unconditionally would let one
client claim a fresh address on every request and walk past every per-address limit. Behind proxies that
append the address they saw (nginx, a cloud load balancer, the Heroku or Cloud Foundry router) the peer is
the proxy instead, and every visitor would share one budget; WEBCHAT_TRUSTED_PROXIES says how many such
proxies there are, and the client is the entry that many places from the right: only those entries were
written by proxies we trust, everything to their left came from the client and may be forged.

A count alone still believes the header from any peer: a client that reaches the app port directly (a pod IP, a
NodePort) is its own "proxy" and forges a fresh address per request. WEBCHAT_TRUSTED_PROXY_NETS closes that: the
header is read only when the peer is inside those networks, and walking from the right every entry skipped as a
proxy must be inside them too; the first entry that is not is the client (it came past fewer proxies, and what is
left of it was written by the client). Without it the port must be reachable only through the proxies.

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
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def parse_networks(text: str | None) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is its /32 or /128); ValueError names the entry that is not one.

    Host bits are an error, not silently dropped: "10.0.0.1/8" is more likely a typo for a /32 than a wish to
    trust all of 10/8.
    """
    nets: list[Network] = []
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            detail = str(exc) if "host bits" in str(exc) else "write it as an address or address/prefix"
            raise ValueError(f"{entry!r} is not a network ({detail}), e.g. 10.0.0.0/8 or 127.0.0.1/32") from None
    return tuple(nets)


def _within(address: Address | None, nets: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees an IPv4 proxy as ::ffff:a.b.c.d
    return address is not None and any(address in net for net in nets)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted_proxies: int,
                   trusted_nets: Sequence[Network] = ()) -> str:
    """The client's bucket from the peer and every X-Forwarded-For header; pure, so it is tested without a server.

    With fewer entries than trusted proxies (or garbage where the next entry should be) the request did not
    come the configured way, so the peer is used: never an address the client chose. With `trusted_nets` the
    peer and every entry skipped on the way must be in them (see the module docstring); without, the entry
    `trusted_proxies` places from the right is taken as it is.
    """
    source = parse(peer)
    if not trusted_proxies or (trusted_nets and not _within(source, trusted_nets)):
        return bucket(source)
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    for depth in range(1, min(trusted_proxies, len(hops)) + 1):
        last = depth == trusted_proxies
        if not last and not trusted_nets:
            continue
        hop = parse(hops[-depth])
        if hop is None:
            break
        if last or not _within(hop, trusted_nets):
            return bucket(hop)
    return bucket(source)


class ClientAddress:
    """`client_address` for a request, plus one warning per process when the header is ignored.

    One instance serves both the session and the socket endpoint, so "once" means once (see mount.setup).
    """

    def __init__(self, trusted_proxies: int, trusted_nets: Sequence[Network] = ()) -> None:
        self.trusted_proxies = trusted_proxies
        self.trusted_nets = tuple(trusted_nets)
        self.warned = bool(trusted_proxies and not self.trusted_nets)  # believed from anyone: nothing is ignored
        if trusted_proxies and not self.trusted_nets:
            log.warning("webchat_forwarded_for_from_any_peer", trusted_proxies=trusted_proxies,
                        hint="X-Forwarded-For is believed from whoever connects: make the app port reachable only "
                             "through the proxies, or set WEBCHAT_TRUSTED_PROXY_NETS to their networks")
        elif self.trusted_nets and not trusted_proxies:
            log.warning("webchat_trusted_proxy_nets_unused",
                        hint="WEBCHAT_TRUSTED_PROXY_NETS does nothing while WEBCHAT_TRUSTED_PROXIES is 0")

    def __call__(self, request: web.Request) -> str:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        if forwarded and not self.warned:
            self._warn_ignored(request.remote)
        return client_address(request.remote, forwarded, self.trusted_proxies, self.trusted_nets)

    def _warn_ignored(self, peer: str | None) -> None:
        """Either a client forging the header (ignored: fine) or a proxy we were not told about, in which case
        every visitor shares the proxy's budget. Said once, not per request."""
        if not self.trusted_proxies:
            hint = "behind a proxy, set WEBCHAT_TRUSTED_PROXIES to the number of proxies"
        elif self.trusted_nets and not _within(parse(peer), self.trusted_nets):
            hint = "the peer is not in WEBCHAT_TRUSTED_PROXY_NETS; if it is one of your proxies, add its network"
        else:
            return
        self.warned = True
        log.warning("webchat_forwarded_for_ignored", peer=peer, hint=hint)
