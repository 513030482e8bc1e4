"""Twilio's request signature (`X-Twilio-Signature`), implemented from the documented algorithm.

base64(HMAC-SHA1(auth token, URL + every POST parameter name and value, sorted by name)). The URL is
the one Twilio called — the public one, not what a proxy forwarded to us — which is why it is rebuilt
from SWITCHBOARD_PUBLIC_URL or the X-Forwarded-* headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

HEADER = "X-Twilio-Signature"


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def public_url(request: web.Request, configured: str | None) -> str:
    if configured:
        return configured.rstrip("/") + request.path_qs
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{proto}://{host}{request.path_qs}"


def _port_variants(url: str) -> list[str]:
    """Twilio may sign with or without the default port (its own helper libraries accept both)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if parts.port is None and default and parts.hostname:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default and parts.hostname:
        variants.append(urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])))
    return variants


def valid(auth_token: str, url: str, params: list[tuple[str, str]], signature: str | None) -> bool:
    if not signature:
        return False
    return any(hmac.compare_digest(compute(auth_token, u, params), signature) for u in _port_variants(url))


async def verified_form(
    request: web.Request, auth_token: str, configured_url: str | None, max_body: int
) -> dict[str, str] | web.Response:
    """The posted form if Twilio signed it, else the answer to give: 413, 400 or 403.

    Every Twilio request (messages in, delivery reports) is checked the same way, before anything is read
    from it: size first, then the signature over the URL Twilio called and every parameter."""
    if request.content_length is not None and request.content_length > max_body:
        return web.Response(status=413, text="body too large")
    try:
        posted = await request.post()
    except ValueError:
        return web.Response(status=400, text="unreadable form body")
    params = [(k, v) for k, v in posted.items() if isinstance(v, str)]
    url = public_url(request, configured_url)
    if not valid(auth_token, url, params, request.headers.get(HEADER)):
        log.warning("twilio_signature_rejected", url=url, remote=request.remote)
        return web.Response(status=403, text="bad signature")
    return dict(params)
