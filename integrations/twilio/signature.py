"""Twilio's request signature (`X-Twilio-Signature`), implemented from the documented algorithm.

base64(HMAC-SHA1(auth token, URL + every POST parameter name and value, sorted by name)). The URL is
the one Twilio called — the public one, not what a proxy forwarded to us — which is why it is rebuilt
(`integrations.twilio.urls`) from SWITCHBOARD_PUBLIC_URL or the X-Forwarded-* headers, with the path
and query exactly as they came.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

import structlog
from aiohttp import web

from integrations.twilio import urls
from integrations.webhook.untrusted import UNREADABLE_BODY, same_digest

log = structlog.get_logger(__name__)

HEADER = "X-Twilio-Signature"


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(params))
    # surrogatepass: a request line with undecodable bytes must be refused as unsigned, not crash us.
    mac = hmac.new(auth_token.encode(), data.encode("utf-8", "surrogatepass"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def valid(auth_token: str, candidates: list[str], params: list[tuple[str, str]], signature: str | None) -> bool:
    """Whether `signature` signs `params` at any of the `candidates` URLs (`urls.signed_urls`)."""
    if not signature:
        return False
    return any(same_digest(compute(auth_token, url, params), signature) for url in candidates)


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
    except UNREADABLE_BODY:
        return web.Response(status=400, text="unreadable form body")
    params = [(k, v) for k, v in posted.items() if isinstance(v, str)]
    candidates = urls.signed_urls(request, configured_url)
    if not valid(auth_token, candidates, params, request.headers.get(HEADER)):
        log.warning("twilio_signature_rejected", url=candidates[0], remote=request.remote)
        return web.Response(status=403, text="bad signature")
    return dict(params)
