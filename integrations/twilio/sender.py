"""Replies over SMS and WhatsApp through Twilio's REST Messages API."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog

from gateway.domain import ChannelKind, Conversation, Message
from gateway.ports import Delivery
from integrations.twilio import landed, status, via
from integrations.twilio.parts import SentParts
from integrations.twilio.retry import CallResult, post_with_retry, refused_for_good
from integrations.twilio.split import chunks

log = structlog.get_logger(__name__)

MAX_BODY = 1600
"""Twilio refuses longer bodies (error 21617, counted in UTF-16 units), so longer replies go out as several
messages (`integrations.twilio.split`)."""


def _describe(payload: dict[str, Any]) -> str:
    return " ".join(str(payload[k]) for k in ("code", "message") if payload.get(k) is not None)


class TwilioChannel:
    """One sender for both kinds: register it for SMS and WhatsApp (with Meta's Cloud API too, for the WhatsApp
    customers who last wrote through Twilio: `gateway.channels.WhatsAppBySender`)."""

    kind = ChannelKind.SMS
    kinds = (ChannelKind.SMS, ChannelKind.WHATSAPP)

    def __init__(
        self, session: aiohttp.ClientSession, api_url: str, account_sid: str, auth_token: str, from_number: str,
        whatsapp_from: str | None = None, retries: int = 4, base_delay: float = 0.2,
        redis: aioredis.Redis | None = None, status_callback: str | None = None, timeout_s: float = 15.0,
        whatsapp_reengage: str | None = None,
    ) -> None:
        """`status_callback`: where Twilio reports each reply's delivery (`integrations.twilio.status`); only
        with `redis`, which remembers which reply each Twilio message was. `whatsapp_reengage`: the Content SID
        of the approved template sent outside WhatsApp's 24-hour window."""
        self.session = session
        self.redis = redis
        self.status_callback = status_callback if redis is not None else None
        self.parts = SentParts(redis)
        self.url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.headers = {"Authorization": aiohttp.encode_basic_auth(account_sid, auth_token)}
        self.from_number = from_number
        self.whatsapp_from = whatsapp_from or f"whatsapp:{from_number.removeprefix('whatsapp:')}"
        self.retries = retries
        self.base_delay = base_delay
        self.timeout_s = timeout_s
        self.reengage_content_sid = whatsapp_reengage

    def reengages(self, conversation: Conversation) -> bool:
        return self.reengage_content_sid is not None and conversation.customer.channel is ChannelKind.WHATSAPP

    async def send_template(self, conversation: Conversation, template_id: str) -> Delivery:
        """The approved template by `ContentSid` (Twilio takes it instead of a `Body`), from the number the
        customer wrote to: WhatsApp's window is kept per sender.

        Twilio's message list shows a template's rendered text, never its SID, so an attempt whose answer was lost
        cannot be looked up as a reply's is (`integrations.twilio.landed`): the sender's own quick retry may send
        it twice, a rare extra nudge. One Twilio answered is recorded, and a later attempt does not resend it."""
        if self.reengage_content_sid is None or not self.reengages(conversation):
            return Delivery(ok=False, error="twilio: no WhatsApp re-engagement template configured", permanent=True)
        if earlier := await self.parts.sent(template_id, 0):
            return Delivery(ok=True, external_id=earlier)
        to, sender = self.addresses(conversation)
        sender = await via.recall(self.redis, conversation.customer.key) or sender
        data = {"To": to, "From": sender, "ContentSid": self.reengage_content_sid}
        if self.status_callback:
            data["StatusCallback"] = self.status_callback
        result = await post_with_retry(
            self.session, self.url, describe=_describe, conversation_id=conversation.id, attempts=self.retries,
            base_delay=self.base_delay, timeout_s=self.timeout_s, headers=self.headers, data=data,
        )
        if not result.ok:
            log.warning("twilio_template_failed", conversation_id=conversation.id, error=result.error)
            return Delivery(ok=False, error=f"twilio: {result.error}", permanent=refused_for_good(result.status))
        sid = str(result.payload.get("sid", ""))
        if self.status_callback and self.redis is not None and sid:
            await status.remember(self.redis, sid, conversation.id, template_id, conversation.customer.channel)
        await self.parts.record(template_id, 0, sid, conversation.id)
        log.info("twilio_template_sent", conversation_id=conversation.id, sid=sid)
        return Delivery(ok=True, external_id=sid)

    def addresses(self, conversation: Conversation) -> tuple[str, str]:
        to = conversation.customer.external_id.removeprefix("whatsapp:")
        if conversation.customer.channel is ChannelKind.WHATSAPP:
            return f"whatsapp:{to}", self.whatsapp_from
        return to, self.from_number

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        to, sender = self.addresses(conversation)
        sender = await via.recall(self.redis, conversation.customer.key) or sender
        sids: list[str] = []
        parts = chunks(message.text, MAX_BODY)
        for i, part in enumerate(parts):
            if len(parts) > 1 and (earlier := await self.parts.sent(message.id, i)):
                sids.append(earlier)
                continue
            data = {"To": to, "From": sender, "Body": part}
            if self.status_callback:
                data["StatusCallback"] = self.status_callback
            now = time.time()
            begun = await self.parts.begin(message.id, i, now)
            find = partial(landed.find, self.session, self.url, self.headers, to, sender, part,
                           now if begun is None else begun, conversation.id, self.timeout_s)
            earlier_sid = await find() if begun is not None else None  # a retry, or a worker that died mid-send
            result = CallResult(ok=True, status=200, payload={"sid": earlier_sid}) if earlier_sid else (
                await post_with_retry(
                    self.session, self.url, describe=_describe, conversation_id=conversation.id,
                    attempts=self.retries, base_delay=self.base_delay, timeout_s=self.timeout_s, landed=find,
                    headers=self.headers, data=data,
                ))
            if not result.ok:
                log.warning("twilio_send_failed", conversation_id=conversation.id, error=result.error)
                return Delivery(ok=False, error=f"twilio: {result.error}",
                                external_id=",".join(sids) or None, permanent=refused_for_good(result.status))
            sids.append(str(result.payload.get("sid", "")))
            if self.status_callback and self.redis is not None and sids[-1]:
                await status.remember(self.redis, sids[-1], conversation.id, message.id, conversation.customer.channel)
            if len(parts) > 1:
                await self.parts.record(message.id, i, sids[-1], conversation.id)
        log.info("twilio_sent", conversation_id=conversation.id, message_id=message.id, parts=len(sids))
        return Delivery(ok=True, external_id=",".join(sids))
