"""Customer channels: which are configured, their senders for the worker and routes for the web app.

Each channel package reads its own settings (config beside the code); a channel whose secrets are
missing is simply not offered, with one log line from its package. Web chat needs no configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import ValidationError

from gateway.domain import ChannelKind, InboundMessage
from gateway.ports import CustomerChannel, OnUndelivered
from gateway.settings import ConfigError
from gateway.store import Accepted
from integrations import twilio, webchat, whatsapp


@dataclass
class ChannelConfigs:
    webchat: webchat.WebchatConfig = field(default_factory=webchat.WebchatConfig)
    twilio: twilio.TwilioConfig = field(default_factory=twilio.TwilioConfig)
    whatsapp: whatsapp.WhatsAppConfig = field(default_factory=whatsapp.WhatsAppConfig)


def channel_configs_or_error() -> ChannelConfigs:
    """The channels' own settings (`WEBCHAT_*`, `TWILIO_*`, `WHATSAPP_*`), or a `ConfigError` naming the variable:
    a bad value crashed the process with a traceback instead of the one-line error every other setting gets."""
    try:
        return ChannelConfigs()
    except ValidationError as exc:
        err = exc.errors()[0]
        model = getattr(exc, "title", "")
        fields = {name: info for cls in (webchat.WebchatConfig, twilio.TwilioConfig, whatsapp.WhatsAppConfig)
                  for name, info in cls.model_fields.items() if cls.__name__ == model}
        name = str(err["loc"][0]) if err["loc"] else ""
        alias = getattr(fields[name].validation_alias, "choices", [name])[0] if name in fields else name
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"configuration error: {alias}: {msg}" if alias else f"configuration error: {msg}") from None


def senders(
    configs: ChannelConfigs, redis: aioredis.Redis, session: aiohttp.ClientSession
) -> dict[ChannelKind, CustomerChannel]:
    """The worker's view: who can deliver a reply on each channel (Meta's API wins for WhatsApp)."""
    found: dict[ChannelKind, CustomerChannel] = {ChannelKind.WEBCHAT: webchat.WebchatChannel(redis)}
    tw = configs.twilio
    if not tw.missing():
        assert tw.auth_token and tw.account_sid and tw.from_number
        sender = twilio.TwilioChannel(session, tw.api_url, tw.account_sid, tw.auth_token.get_secret_value(),
                                      tw.from_number, tw.whatsapp_from, redis=redis,
                                      status_callback=tw.status_callback(), timeout_s=tw.timeout_s,
                                      whatsapp_reengage=tw.whatsapp_reengage_content_sid)
        found[ChannelKind.SMS] = found[ChannelKind.WHATSAPP] = sender
    wa = configs.whatsapp
    if not wa.missing():
        assert wa.access_token and wa.phone_number_id
        found[ChannelKind.WHATSAPP] = whatsapp.WhatsAppCloudChannel(
            session, redis, wa.api_url, wa.phone_number_id, wa.access_token.get_secret_value(),
            reengage_template=wa.reengage(),
        )
    return found


def mount(
    app: web.Application,
    configs: ChannelConfigs,
    redis: aioredis.Redis,
    ingest: Callable[[InboundMessage], Awaitable[Accepted]],
    session: aiohttp.ClientSession,
    on_delivery_failed: OnUndelivered | None = None,
) -> None:
    """The web process's view: the inbound routes (/webchat/*, /channels/twilio[/status], /channels/whatsapp)."""
    webchat.setup(app, redis=redis, ingest=ingest, session=session, config=configs.webchat)
    twilio.setup(app, redis=redis, ingest=ingest, session=session, config=configs.twilio,
                 on_failed=on_delivery_failed)
    whatsapp.setup(app, redis=redis, ingest=ingest, session=session, config=configs.whatsapp,
                   on_failed=on_delivery_failed)
