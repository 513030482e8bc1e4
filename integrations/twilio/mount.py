"""Integration surface: `setup()` mounts `/channels/twilio` (and its `/status` callbacks) and returns the
reply channel, or None."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from gateway.domain import InboundMessage
from gateway.ports import OnUndelivered
from gateway.store import Accepted
from integrations.twilio.config import TwilioConfig
from integrations.twilio.sender import TwilioChannel
from integrations.twilio.status import STATUS_PATH, make_status_handler
from integrations.twilio.webhook import make_handler

log = structlog.get_logger(__name__)


def setup(
    app: web.Application,
    *,
    redis: aioredis.Redis,
    ingest: Callable[[InboundMessage], Awaitable[Accepted]],
    session: aiohttp.ClientSession,
    config: TwilioConfig,
    on_failed: OnUndelivered | None = None,
) -> TwilioChannel | None:
    missing = config.missing()
    if missing:
        log.info("twilio_not_mounted", missing=missing)
        return None
    assert config.auth_token is not None and config.account_sid and config.from_number
    token = config.auth_token.get_secret_value()
    app.router.add_post("/channels/twilio", make_handler(token, ingest, config.public_url, config.max_body, redis))
    app.router.add_post(STATUS_PATH, make_status_handler(token, redis, config.public_url, config.max_body, on_failed))
    log.info("twilio_mounted", path="/channels/twilio", status_callbacks=config.status_callback(), api=config.api_url)
    return TwilioChannel(session, config.api_url, config.account_sid, token, config.from_number, config.whatsapp_from,
                         redis=redis, status_callback=config.status_callback(), timeout_s=config.timeout_s)
