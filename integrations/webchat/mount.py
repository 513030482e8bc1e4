"""Integration surface: `setup()` adds the web chat routes to the gateway app and returns its channel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

import aiohttp
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from gateway.domain import InboundMessage
from gateway.store import Accepted
from integrations.webchat.clientip import ClientAddress
from integrations.webchat.config import WebchatConfig
from integrations.webchat.endpoint import SocketEndpoint
from integrations.webchat.origins import OriginPolicy
from integrations.webchat.outbox import WebchatChannel
from integrations.webchat.session import SessionEndpoint

log = structlog.get_logger(__name__)

_STATIC = resources.files("integrations.webchat") / "static"
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'"
)


def _static(name: str, content_type: str, headers: dict[str, str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (_STATIC / name).read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return serve


def setup(
    app: web.Application,
    *,
    redis: aioredis.Redis,
    ingest: Callable[[InboundMessage], Awaitable[Accepted]],
    session: aiohttp.ClientSession,
    config: WebchatConfig,
) -> WebchatChannel:
    """Web chat always mounts: with no configuration it runs in local mode (see `WebchatConfig`)."""
    key, generated = config.token_key()
    if generated:
        log.warning(
            "webchat_token_secret_generated", hint="set WEBCHAT_TOKEN_SECRET when running several web processes"
        )
    policy = OriginPolicy(config.origins, config.public_url)
    client = ClientAddress(config.trusted_proxies, config.proxy_nets)  # one: its warnings are said once
    sessions = SessionEndpoint(redis, config, key, policy, client)
    sockets = SocketEndpoint(redis, ingest, config, key, policy, client)
    app.router.add_get(
        "/webchat/widget.js",
        _static("widget.js", "application/javascript", {"Cache-Control": "public, max-age=300"}),
    )
    demo_headers = {"Content-Security-Policy": DEMO_CSP, "Cache-Control": "no-cache"}
    app.router.add_get("/webchat/", _static("index.html", "text/html", demo_headers))
    app.router.add_post("/webchat/session", sessions.create)
    app.router.add_route("OPTIONS", "/webchat/session", sessions.preflight)
    app.router.add_get("/webchat/ws", sockets.handle)
    app.on_shutdown.append(sockets.close_all)
    app.on_shutdown.append(sessions.close)
    log.info("webchat_mounted", origins=sorted(policy.allowed) or ["<own origin>"],
             identity=config.identity_secret is not None, trusted_proxies=config.trusted_proxies,
             trusted_proxy_nets=config.trusted_proxy_nets)
    return WebchatChannel(redis)
