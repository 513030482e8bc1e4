"""`POST /channels/twilio/status`: Twilio's delivery reports for the replies we sent.

Twilio's 201 to a send means "queued", not "on the customer's phone": a landline, a switched-off handset,
an unsubscribed number or a carrier filter turns up only later, as a status callback. Without reading it
the agent saw ✅ on a reply the customer never got. A reply reported `undelivered` or `failed` is told in
the card's thread once (through the customer's stream, like the WhatsApp Cloud API's failed statuses).

Callbacks are requested only when `SWITCHBOARD_PUBLIC_URL` is set: Twilio needs an address it can reach.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from gateway import keys, metrics
from gateway.domain import ChannelKind
from gateway.ports import OnUndelivered
from gateway.redis_conn import as_str
from integrations.twilio import signature

log = structlog.get_logger(__name__)

STATUS_PATH = "/channels/twilio/status"
SENT_TTL_S = 7 * 86400
"""Twilio reports within minutes to a few days (a handset that stays off); a week covers it."""
UNDELIVERED = frozenset({"undelivered", "failed"})

ERRORS = {
    "21610": "the customer unsubscribed (replied STOP)",
    "21614": "not a mobile number",
    "30003": "the handset is unreachable (off or out of coverage)",
    "30004": "the customer blocked the number",
    "30005": "the number is unknown or no longer in service",
    "30006": "a landline, or a carrier that cannot take it",
    "30007": "the carrier filtered it as spam",
    "30008": "the carrier gave no reason",
    "63016": "outside WhatsApp's 24-hour window (a template message is needed)",
}
"""Twilio's common delivery error codes, in words an agent can act on (the code is kept beside them)."""


SHOWN = {ChannelKind.SMS.value: "SMS", ChannelKind.WHATSAPP.value: "WhatsApp"}
"""How the thread names the channel."""


def sent_key(sid: str) -> str:
    """A sent message's Twilio sid -> "conversation id|reply message id|channel kind"."""
    return f"{keys.PREFIX}twilio:sent:{sid}"


def told_key(message_id: str) -> str:
    """Set once the thread was told: a reply sent in several parts, or a callback repeated, is told once."""
    return f"{keys.PREFIX}twilio:told:{message_id}"


class TwilioStatus(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_sid: str = Field(alias="MessageSid", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")
    message_status: str = Field(alias="MessageStatus", min_length=1, max_length=32, pattern=r"^[a-z_]+$")
    error_code: str | None = Field(default=None, alias="ErrorCode", max_length=10, pattern=r"^[0-9]*$")

    def reason(self) -> str:
        if not self.error_code:
            return f"Twilio reported it {self.message_status}"
        return f"{self.error_code}: {ERRORS.get(self.error_code, 'see twilio.com/docs/api/errors')}"


async def remember(
    redis: aioredis.Redis, sid: str, conversation_id: str, message_id: str, channel: ChannelKind
) -> None:
    """After a send: which reply a later status callback is about."""
    try:
        await redis.set(sent_key(sid), f"{conversation_id}|{message_id}|{channel.value}", ex=SENT_TTL_S)
    except (RedisError, OSError):  # the reply is sent; only a later failure report could go unattributed
        log.warning("twilio_sent_unrecorded", conversation_id=conversation_id, sid=sid)


def make_status_handler(
    auth_token: str, redis: aioredis.Redis, public_url: str | None, max_body: int, on_failed: OnUndelivered | None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def status(request: web.Request) -> web.Response:
        form = await signature.verified_form(request, auth_token, public_url, max_body)
        if isinstance(form, web.Response):
            return form
        try:
            report = TwilioStatus.model_validate(form)
        except ValidationError as exc:
            log.warning("twilio_status_invalid", errors=exc.error_count())
            return web.Response(status=400, text="invalid status")
        if report.message_status not in UNDELIVERED:
            return web.Response(status=204)
        try:
            await _tell(redis, report, on_failed)
        except (RedisError, OSError) as exc:
            log.error("twilio_status_unavailable", sid=report.message_sid, error=str(exc))
            return web.Response(status=503, text="unavailable", headers={"Retry-After": "2"})
        return web.Response(status=204)

    return status


async def _tell(redis: aioredis.Redis, report: TwilioStatus, on_failed: OnUndelivered | None) -> None:
    raw = await redis.get(sent_key(report.message_sid))
    if raw is None:
        log.info("twilio_status_for_unknown_message", sid=report.message_sid, status=report.message_status)
        return
    conversation_id, message_id, channel = as_str(raw).split("|", 2)
    metrics.channel_failed(channel)
    log.warning("twilio_delivery_failed", conversation_id=conversation_id, sid=report.message_sid,
                status=report.message_status, error_code=report.error_code)
    if on_failed is None or not await redis.set(told_key(message_id), report.message_sid, nx=True, ex=SENT_TTL_S):
        return
    try:
        await on_failed(conversation_id, SHOWN.get(channel, channel), report.reason())
    except BaseException:
        await redis.delete(told_key(message_id))  # not told after all: a repeated callback tries again
        raise
