"""Integration surface: `setup()` mounts `/channels/whatsapp` and returns the reply channel, or None."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from gateway.domain import InboundMessage
from gateway.ports import OnUndelivered
from gateway.store import Accepted
from integrations.whatsapp.config import WhatsAppConfig
from integrations.whatsapp.sender import WhatsAppCloudChannel
from integrations.whatsapp.webhook import Receiver, make_verify

log = structlog.get_logger(__name__)


def setup(
    app: web.Application,
    *,
    redis: aioredis.Redis,
    ingest: Callable[[InboundMessage], Awaitable[Accepted]],
    session: aiohttp.ClientSession,
    config: WhatsAppConfig,
    on_failed: OnUndelivered | None = None,
    forget_twilio_sender: bool = False,
) -> WhatsAppCloudChannel | None:
    """`forget_twilio_sender`: Twilio carries WhatsApp too, and a customer writing here is answered from here
    again (`gateway.channels.WhatsAppBySender`)."""
    missing = config.missing()
    if missing:
        log.info("whatsapp_not_mounted", missing=missing)
        return None
    assert config.app_secret and config.verify_token and config.access_token and config.phone_number_id
    receiver = Receiver(redis, ingest, config.app_secret.get_secret_value(), config.max_body, on_failed,
                        forget_twilio_sender=forget_twilio_sender)
    app.router.add_get("/channels/whatsapp", make_verify(config.verify_token.get_secret_value()))
    app.router.add_post("/channels/whatsapp", receiver.handle)
    log.info("whatsapp_mounted", path="/channels/whatsapp", api=config.api_url)
    return WhatsAppCloudChannel(
        session, redis, config.api_url, config.phone_number_id, config.access_token.get_secret_value()
    )
