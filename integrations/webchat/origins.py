"""Which browser origins may open a chat socket or a session.

With no allow-list the gateway's own origin is the only one allowed: derived from
SWITCHBOARD_PUBLIC_URL, or else from the request (honouring X-Forwarded-Proto/Host from a proxy).
A browser always sends the real page origin, so a foreign page cannot pass for the gateway's.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web


def own_origin(request: web.Request, public_url: str | None) -> str:
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{proto}://{host}".lower()


class OriginPolicy:
    def __init__(self, allowed: frozenset[str], public_url: str | None) -> None:
        self.allowed = frozenset(o.lower() for o in allowed)
        self.public_url = public_url

    def allows(self, origin: str | None, request: web.Request) -> bool:
        if not origin:
            return False
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed or origin in self.allowed:
            return True
        return not self.allowed and origin == own_origin(request, self.public_url)
