"""`POST /channels/twilio`: inbound SMS and WhatsApp messages from Twilio Messaging.

Same order as the JSON API: size limit, signature, validation, durable ingest, and only then the empty
TwiML answer — Twilio treats a 2xx as delivered, so answering earlier could lose a message. The number the
customer wrote to is remembered after the checks and before the ingest (`integrations.twilio.via`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from gateway.domain import MAX_TEXT, ChannelKind, CustomerProfile, Identifier, InboundMessage
from gateway.store import Accepted
from integrations.twilio import signature, via
from integrations.whatsapp.payload import location_line

log = structlog.get_logger(__name__)

Ingest = Callable[[InboundMessage], Awaitable[Accepted]]
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_MEDIA = 10


class TwilioInbound(BaseModel):
    """The fields we use; Twilio adds more over time, so unknown ones are ignored (but still signed)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_: str = Field(alias="From", min_length=1, max_length=64)
    to: str = Field(alias="To", min_length=1, max_length=64)
    body: str = Field(default="", alias="Body")
    message_sid: Identifier = Field(alias="MessageSid")
    num_media: int = Field(default=0, alias="NumMedia", ge=0, le=100)
    profile_name: str | None = Field(default=None, alias="ProfileName", max_length=200)
    latitude: str | None = Field(default=None, alias="Latitude", max_length=64)
    longitude: str | None = Field(default=None, alias="Longitude", max_length=64)
    address: str | None = Field(default=None, alias="Address", max_length=1000)
    label: str | None = Field(default=None, alias="Label", max_length=1000)
    """A WhatsApp location pin comes as these four (the last two optional) with an empty Body."""

    @property
    def channel(self) -> ChannelKind:
        return ChannelKind.WHATSAPP if self.from_.startswith("whatsapp:") else ChannelKind.SMS

    @property
    def number(self) -> str:
        return self.from_.removeprefix("whatsapp:").strip()


def _coordinate(raw: str) -> str:
    """Twilio's "52.5200" as Meta's JSON number reads ("52.52"); anything that is not a number, as sent."""
    try:
        value = float(raw)
    except ValueError:
        return raw.strip()
    return str(value) if math.isfinite(value) else raw.strip()


def location_text(inbound: TwilioInbound) -> str | None:
    """A shared WhatsApp location as `integrations.whatsapp.payload` renders Meta's (`[location lat,long name,
    address]`), so agents read one form whichever provider carries WhatsApp. It has no Body: taken for an
    empty message, it was answered 200 and dropped, and the customer's "where the courier should go" was lost."""
    if not (inbound.latitude and inbound.longitude and inbound.latitude.strip() and inbound.longitude.strip()):
        return None
    names = ((part or "").strip() for part in (inbound.label, inbound.address))
    return location_line(_coordinate(inbound.latitude), _coordinate(inbound.longitude), *names)


def message_text(inbound: TwilioInbound, form: dict[str, str]) -> str:
    """Body, a shared location, and one line per attachment, so the agent sees (and can open) what was sent."""
    lines = [inbound.body.strip()] if inbound.body.strip() else []
    location = location_text(inbound)
    if location is not None:
        lines.append(location)
    for i in range(min(inbound.num_media, MAX_MEDIA)):
        url = form.get(f"MediaUrl{i}")
        if url:
            kind = form.get(f"MediaContentType{i}", "file")
            lines.append(f"[attachment {kind}: {url}]")
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _profile(inbound: TwilioInbound) -> CustomerProfile:
    try:
        return CustomerProfile(phone=inbound.number, name=inbound.profile_name)
    except ValidationError:  # alphanumeric sender ids are not phone numbers
        return CustomerProfile(name=inbound.profile_name)


def twiml() -> web.Response:
    return web.Response(text=TWIML_EMPTY, content_type="text/xml")


def make_handler(auth_token: str, ingest: Ingest, public_url: str | None, max_body: int,
                 redis: aioredis.Redis | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def inbound(request: web.Request) -> web.Response:
        form = await signature.verified_form(request, auth_token, public_url, max_body)
        if isinstance(form, web.Response):
            return form
        try:
            msg = TwilioInbound.model_validate(form)
        except ValidationError as exc:
            log.warning("twilio_payload_invalid", errors=exc.error_count())
            return web.Response(status=400, text="invalid message")
        text = message_text(msg, form)
        if not text:
            log.info("twilio_empty_message_ignored", message_sid=msg.message_sid)
            return twiml()
        try:
            inbound_msg = InboundMessage(
                channel=msg.channel, customer_id=msg.number, message_id=msg.message_sid, text=text,
                customer=_profile(msg),
            )
        except ValidationError:
            log.warning("twilio_sender_invalid", message_sid=msg.message_sid)
            return web.Response(status=400, text="invalid sender")
        if redis is not None:
            # Before the ingest queues it: a bot answer to a first text could otherwise be sent before the number
            # was remembered, from TWILIO_FROM_NUMBER. Only now, with the signature and the message checked.
            await via.remember(redis, inbound_msg.customer_key, msg.to.strip())
        try:
            accepted = await ingest(inbound_msg)
        except (RedisError, OSError) as exc:
            # Unreachable, or refusing writes (a failover's READONLY, out of memory): nothing was stored.
            # 503, not 500: with a Fallback URL or connection overrides Twilio tries it again (see README).
            log.error("ingest_unavailable", error=str(exc), channel=msg.channel.value)
            return web.Response(status=503, text="unavailable", headers={"Retry-After": "2"})
        log.info("message_accepted", conversation_id=accepted.conversation_id, message_id=accepted.message_id,
                 channel=msg.channel.value, duplicate=accepted.duplicate)
        return twiml()

    return inbound
