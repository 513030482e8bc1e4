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

from gateway.domain import ChannelKind, Conversation, InboundMessage, Message
from gateway.ports import CustomerChannel, Delivery, OnUndelivered
from gateway.settings import ConfigError
from gateway.store import Accepted
from integrations import twilio, webchat, whatsapp
from integrations.twilio import via


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


class WhatsAppBySender:
    """WhatsApp with both Twilio and Meta's Cloud API configured: each customer is answered through the provider
    they last wrote through, from the sender they wrote to. Twilio's webhook remembers the sender a customer wrote
    to (`integrations.twilio.via`) and Meta's forgets it, so a remembered one means Twilio.

    Meta's answered every WhatsApp customer: one who wrote to the Twilio sender got every reply from Meta's number,
    which they had never written to (and whose 24-hour window is not theirs, so a reply could be refused)."""

    kind = ChannelKind.WHATSAPP

    def __init__(self, twilio_sender: twilio.TwilioChannel, meta: whatsapp.WhatsAppCloudChannel,
                 redis: aioredis.Redis) -> None:
        self.twilio = twilio_sender
        self.meta = meta
        self.redis = redis

    async def provider(self, conversation: Conversation) -> twilio.TwilioChannel | whatsapp.WhatsAppCloudChannel:
        return self.twilio if await via.recall(self.redis, conversation.customer.key) else self.meta

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        return await (await self.provider(conversation)).send(conversation, message)

    def reengages(self, conversation: Conversation) -> bool:
        """Either provider's template may be the one: which provider answers is read from Redis at the send, and
        one without a template refuses it there, for good, as a WhatsApp with no template does."""
        return self.twilio.reengages(conversation) or self.meta.reengages(conversation)

    async def send_template(self, conversation: Conversation, template_id: str) -> Delivery:
        return await (await self.provider(conversation)).send_template(conversation, template_id)


def senders(
    configs: ChannelConfigs, redis: aioredis.Redis, session: aiohttp.ClientSession
) -> dict[ChannelKind, CustomerChannel]:
    """The worker's view: who can deliver a reply on each channel. WhatsApp through Twilio or Meta's Cloud API, or,
    with both, through the one each customer last wrote through (`WhatsAppBySender`)."""
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
        meta = whatsapp.WhatsAppCloudChannel(
            session, redis, wa.api_url, wa.phone_number_id, wa.access_token.get_secret_value(),
            reengage_template=wa.reengage(),
        )
        through_twilio = found.get(ChannelKind.WHATSAPP)
        found[ChannelKind.WHATSAPP] = (WhatsAppBySender(through_twilio, meta, redis)
                                       if isinstance(through_twilio, twilio.TwilioChannel) else meta)
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
                   on_failed=on_delivery_failed, forget_twilio_sender=not configs.twilio.missing())
