"""`GET/POST /channels/whatsapp`: Meta's verification handshake, signed deliveries, statuses.

A delivery is answered 200 only after every message in it is durably ingested (Meta re-delivers
otherwise, and ingest de-duplicates by message id, so a re-delivery costs nothing). Statuses are
recorded once per (message, status) and appended to a stream so delivery failures can be surfaced.

A status carrying our callback data is also the only word we get that a send whose answer was lost reached Meta
(`integrations.whatsapp.landed`), so it is recorded before anything else is done with the status; the
conversation id in that data attributes the status (and a failure told to the agent) even though the sender
never learnt the wamid.

A wamid encodes the customer's phone number (`integrations.whatsapp.wamid`): logs carry only its fingerprint,
and the status stream's entries, which keep it for attribution, are erased with the customer (`gateway.erasure`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway import metrics
from gateway.domain import ChannelKind, CustomerProfile, InboundMessage
from gateway.ports import OnUndelivered
from gateway.redis_conn import as_str
from gateway.store import Accepted
from integrations.body import read_limited
from integrations.twilio import via
from integrations.webhook.untrusted import UNREADABLE_BODY, same_digest
from integrations.whatsapp import landed
from integrations.whatsapp.payload import Value, WaStatus, Webhook, message_text
from integrations.whatsapp.wamid import fingerprint

log = structlog.get_logger(__name__)

Ingest = Callable[[InboundMessage], Awaitable[Accepted]]
SIGNATURE_HEADER = "X-Hub-Signature-256"
STATUS_STREAM = "sb:whatsapp:statuses"
STATUS_TTL_S = 30 * 86400


def status_key(wamid: str) -> str:
    return f"sb:whatsapp:status:{wamid}"


def sent_key(wamid: str) -> str:
    """wamid of a reply we sent -> conversation id, so its statuses can be attributed."""
    return f"sb:whatsapp:sent:{wamid}"


_RECORD_STATUS = """
local new = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if new == 1 then
  local conv = redis.call('GET', KEYS[3]) or ''
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'wamid', ARGV[3], 'status', ARGV[1], 'at', ARGV[2],
             'conversation_id', conv, 'errors', ARGV[4])
  return conv
end
return false
"""


def _reason(status: WaStatus) -> str:
    """The provider's own words, kept short and stripped of Slack's control characters."""
    text = "; ".join(" ".join(str(x) for x in (e.code, e.title) if x) for e in status.errors) or "no reason given"
    return re.sub(r"[<>&*_~`]", "", text)[:200]


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return same_digest(expected, header.removeprefix("sha256=").strip().lower())


def make_verify(verify_token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def verify(request: web.Request) -> web.Response:
        q = request.query
        token = q.get("hub.verify_token", "")
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(token.encode(), verify_token.encode()):
            log.info("whatsapp_webhook_verified")
            return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
        log.warning("whatsapp_verify_refused", mode=q.get("hub.mode"))
        return web.Response(status=403, text="verification failed")

    return verify


class Receiver:
    def __init__(self, redis: aioredis.Redis, ingest: Ingest, app_secret: str, max_body: int,
                 on_failed: OnUndelivered | None = None, forget_twilio_sender: bool = False) -> None:
        """`forget_twilio_sender`: with Twilio carrying WhatsApp too, a message here drops the Twilio sender the
        customer last wrote to, so they are answered through Meta again (`gateway.channels.WhatsAppBySender`)."""
        self.redis = redis
        self.forget_twilio_sender = forget_twilio_sender
        self.on_failed = on_failed
        self.ingest = ingest
        self.app_secret = app_secret
        self.max_body = max_body
        self._record = redis.register_script(_RECORD_STATUS)

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            return web.json_response({"error": "body_too_large"}, status=413)
        try:
            body = await read_limited(request, self.max_body)
        except UNREADABLE_BODY:
            return web.json_response({"error": "unreadable_body"}, status=400)
        if body is None:
            return web.json_response({"error": "body_too_large"}, status=413)
        if not signature_ok(self.app_secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("whatsapp_signature_rejected", remote=request.remote)
            return web.json_response({"error": "bad_signature"}, status=401)
        try:
            hook = Webhook.model_validate(json.loads(body))
        except (ValueError, ValidationError):
            return web.json_response({"error": "invalid_payload"}, status=400)
        try:
            for entry in hook.entry:
                for change in entry.changes:
                    if change.field == "messages":
                        await self.messages(change.value)
                        await self.statuses(change.value.statuses)
        except (RedisError, OSError) as exc:  # a failover's READONLY and an OOM too: Meta re-delivers
            log.error("ingest_unavailable", error=str(exc), channel="whatsapp")
            return web.json_response({"error": "unavailable"}, status=503, headers={"Retry-After": "2"})
        return web.json_response({"status": "ok"})

    async def messages(self, value: Value) -> None:
        names = {c.wa_id: c.profile.name for c in value.contacts}
        for m in value.messages:
            number = "+" + m.from_.removeprefix("+")
            try:
                inbound = InboundMessage(
                    channel=ChannelKind.WHATSAPP, customer_id=number, message_id=m.id, text=message_text(m),
                    customer=CustomerProfile(phone=number, name=names.get(m.from_.removeprefix("+"))),
                )
            except ValidationError:
                log.warning("whatsapp_message_skipped", wamid_hash=fingerprint(m.id), type=m.type)
                continue
            if self.forget_twilio_sender:
                # Before the ingest queues it, so no answer to it leaves through Twilio. Not best effort: a
                # failure answers 503 and Meta delivers the message again.
                await via.forget(self.redis, inbound.customer_key)
            accepted = await self.ingest(inbound)
            log.info("message_accepted", conversation_id=accepted.conversation_id, message_id=accepted.message_id,
                     channel="whatsapp", duplicate=accepted.duplicate)

    async def _tell_failed(self, status: WaStatus) -> None:
        """Before the status is recorded: if queuing the note fails, Meta's retry of the webhook finds the
        status unrecorded and tries again (a repeat delivered after that is recognised and skipped)."""
        assert self.on_failed is not None
        if await self.redis.hexists(status_key(status.id), "failed"):
            return
        conv = await self.redis.get(sent_key(status.id))
        if conv is not None:
            metrics.channel_failed(ChannelKind.WHATSAPP.value)
            await self.on_failed(as_str(conv), "WhatsApp", _reason(status))

    async def _landed(self, status: WaStatus) -> None:
        """A reply part named by our callback data landed as this wamid (any status says so, `failed` too)."""
        ours = landed.parse(status.biz_opaque_callback_data)
        if ours is None:
            return
        part_ref, conv = ours
        if conv is not None:
            await self.redis.set(sent_key(status.id), conv, nx=True, ex=STATUS_TTL_S)
        if await landed.record(self.redis, part_ref, status.id):
            log.info("whatsapp_part_landed", conversation_id=conv, part=part_ref, wamid_hash=fingerprint(status.id),
                     status=status.status)

    async def statuses(self, statuses: list[WaStatus]) -> None:
        for s in statuses:
            await self._landed(s)
            errors = json.dumps([e.model_dump(exclude_none=True) for e in s.errors])
            if s.status == "failed" and self.on_failed is not None:
                await self._tell_failed(s)
            conv = await self._record(
                keys=[status_key(s.id), STATUS_STREAM, sent_key(s.id)],
                args=[s.status, s.timestamp or "", s.id, errors, STATUS_TTL_S],
            )
            if conv is not None:
                conv_id = conv.decode() if isinstance(conv, bytes) else str(conv)
                event = "whatsapp_delivery_failed" if s.status == "failed" else "whatsapp_status"
                log.info(event, conversation_id=conv_id or None, wamid_hash=fingerprint(s.id), status=s.status,
                         errors=errors if s.errors else None)
