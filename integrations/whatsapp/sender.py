"""Replies through the WhatsApp Cloud API (Graph `/<phone number id>/messages`), each part at most once if we can.

An answer we never got (a timeout, a dropped connection, a 5xx) may follow a send Meta accepted, so the part is
not sent again until Meta's status webhook says whether it landed (`integrations.whatsapp.landed`). The sender's
own quick retries cannot wait that long, and blocking the worker for it would hold up the customer's partition,
so the send answers a transient failure instead and the worker's delivery retries come back for the answer.
An answer that took nothing (a 4xx, 429 included) clears the attempt's mark so the next one goes at once; a
network error on the last try keeps it, as `post_with_retry` does not say whether the request was ever written.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gateway.domain import ChannelKind, Conversation, Message
from gateway.ports import Delivery
from integrations.twilio.parts import SentParts
from integrations.twilio.retry import CallResult, post_with_retry, refused_for_good
from integrations.twilio.split import chunks
from integrations.whatsapp.landed import UNSETTLED_S, Landed, callback_data
from integrations.whatsapp.wamid import fingerprint
from integrations.whatsapp.webhook import STATUS_TTL_S, sent_key

log = structlog.get_logger(__name__)

MAX_BODY = 4096
UNSETTLED = "earlier attempt may have landed; waiting for Meta's status"


def _describe(payload: dict[str, Any]) -> str:
    err = payload.get("error")
    if not isinstance(err, dict):
        return ""
    return " ".join(str(err[k]) for k in ("code", "message") if err.get(k) is not None)


def _meta_answered(payload: dict[str, Any]) -> bool:
    """A 5xx carrying Graph's own error object: Meta answered and took nothing, so the part may go again at once.
    Waited out like a lost answer, every Graph 500 delayed the reply by 90 s and put a note in the thread."""
    err = payload.get("error")
    return isinstance(err, dict) and err.get("code") is not None


def _wamid(payload: dict[str, Any]) -> str:
    """From Meta's answer, or `post_with_retry`'s `sid` when the landed lookup found it."""
    if payload.get("sid"):
        return str(payload["sid"])
    sent = payload.get("messages") or [{}]
    return str(sent[0].get("id", "")) if isinstance(sent, list) and isinstance(sent[0], dict) else ""


class _Unsettled(Exception):
    """An attempt may have landed and Meta has not said yet: do not resend now."""


class WhatsAppCloudChannel:
    kind = ChannelKind.WHATSAPP

    def __init__(
        self, session: aiohttp.ClientSession, redis: aioredis.Redis, api_url: str, phone_number_id: str,
        access_token: str, retries: int = 4, base_delay: float = 0.2, timeout_s: float = 15.0,
        unsettled_s: float = UNSETTLED_S, reengage_template: tuple[str, str] | None = None,
    ) -> None:
        """`unsettled_s`: how long an attempt with a lost answer is waited on before its part is sent again.
        `reengage_template`: (name, language code) of the approved template sent outside the 24-hour window."""
        self.session = session
        self.redis = redis
        self.parts = SentParts(redis)
        self.landed = Landed(redis)
        self.url = f"{api_url.rstrip('/')}/{phone_number_id}/messages"
        self.headers = {"Authorization": f"Bearer {access_token}"}
        self.retries = retries
        self.base_delay = base_delay
        self.timeout_s = timeout_s
        self.unsettled_s = unsettled_s
        self.template = reengage_template

    def reengages(self, conversation: Conversation) -> bool:
        return self.template is not None and conversation.customer.channel is ChannelKind.WHATSAPP

    async def send_template(self, conversation: Conversation, template_id: str) -> Delivery:
        """The approved template, as a reply part named `template_id`: the same at-most-once care as a reply's
        (a resend after a lost answer waits for Meta's status), since a second "we have an update" is noise."""
        if self.template is None:
            return Delivery(ok=False, error="whatsapp: no re-engagement template configured", permanent=True)
        name, code = self.template
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": self._to(conversation),
                "type": "template", "template": {"name": name, "language": {"code": code}},
                "biz_opaque_callback_data": callback_data(conversation.id, template_id, 0)}
        result = await self._part(conversation.id, template_id, 0, body)
        if not result.ok:
            log.warning("whatsapp_template_failed", conversation_id=conversation.id, error=result.error)
            return Delivery(ok=False, error=f"whatsapp: {result.error}", permanent=refused_for_good(result.status))
        wamid = _wamid(result.payload)
        await self._remember(conversation.id, wamid)
        log.info("whatsapp_template_sent", conversation_id=conversation.id, template=name,
                 wamid_hash=fingerprint(wamid))
        return Delivery(ok=True, external_id=wamid)

    @staticmethod
    def _to(conversation: Conversation) -> str:
        return conversation.customer.external_id.removeprefix("whatsapp:").removeprefix("+")

    async def _remember(self, conversation_id: str, wamid: str) -> None:
        """Which conversation a status webhook about this wamid concerns; best effort, the message went out."""
        if not wamid:
            return
        try:
            await self.redis.set(sent_key(wamid), conversation_id, ex=STATUS_TTL_S)
        except (RedisError, OSError):
            log.warning("whatsapp_sent_unrecorded", conversation_id=conversation_id, wamid_hash=fingerprint(wamid))

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        to = self._to(conversation)
        ids: list[str] = []
        parts = chunks(message.text, MAX_BODY)
        for i, part in enumerate(parts):
            if len(parts) > 1 and (earlier := await self.parts.sent(message.id, i)):
                ids.append(earlier)
                continue
            body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
                    "text": {"preview_url": False, "body": part},
                    "biz_opaque_callback_data": callback_data(conversation.id, message.id, i)}
            result = await self._part(conversation.id, message.id, i, body)
            if not result.ok:
                log.warning("whatsapp_send_failed", conversation_id=conversation.id, error=result.error)
                return Delivery(ok=False, error=f"whatsapp: {result.error}",
                                external_id=",".join(ids) or None, permanent=refused_for_good(result.status))
            wamid = _wamid(result.payload)
            ids.append(wamid)
            if len(parts) > 1:
                await self.parts.record(message.id, i, wamid, conversation.id)
            await self._remember(conversation.id, wamid)
        log.info("whatsapp_sent", conversation_id=conversation.id, message_id=message.id, parts=len(ids))
        return Delivery(ok=True, external_id=",".join(ids))

    async def _part(self, conversation_id: str, message_id: str, part: int, body: dict[str, Any]) -> CallResult:
        """One part: its wamid if an earlier attempt landed, else sent, unless an earlier attempt is unsettled."""
        if known := await self.landed.found(message_id, part):
            log.info("whatsapp_send_already_taken", conversation_id=conversation_id, wamid_hash=fingerprint(known),
                     part=part)
            return CallResult(ok=True, status=200, payload={"sid": known})
        now = time.time()
        begun = await self.landed.begun(message_id, part)  # a retry, or a worker that died mid-send
        if begun is not None and now - begun < self.unsettled_s:
            log.info("whatsapp_send_unsettled", conversation_id=conversation_id, part=part, age_s=now - begun)
            return CallResult(ok=False, error=UNSETTLED)
        if begun is not None:
            log.warning("whatsapp_resend_unconfirmed", conversation_id=conversation_id, part=part, age_s=now - begun)
        await self.landed.begin(message_id, part, now)

        async def landed() -> str | None:
            """Asked by `post_with_retry` before resending after an answer we never got."""
            try:
                wamid = await self.landed.found(message_id, part)
            except (RedisError, OSError):
                wamid = None
            if wamid:
                log.info("whatsapp_send_already_taken", conversation_id=conversation_id,
                         wamid_hash=fingerprint(wamid), part=part)
                return wamid
            if time.time() - now < self.unsettled_s:
                raise _Unsettled
            return None

        try:
            result = await post_with_retry(
                self.session, self.url, describe=_describe, conversation_id=conversation_id, attempts=self.retries,
                base_delay=self.base_delay, timeout_s=self.timeout_s, landed=landed, answered=_meta_answered, json=body,
                headers=self.headers,
            )
        except _Unsettled:
            log.info("whatsapp_send_unsettled", conversation_id=conversation_id, part=part, age_s=time.time() - now)
            return CallResult(ok=False, error=UNSETTLED)
        if result.ok:
            await self.landed.settle(message_id, part, _wamid(result.payload), conversation_id)
        elif result.status is not None and (result.status < 500 or _meta_answered(result.payload)):
            # Answered, and nothing taken: the next try goes at once.
            await self.landed.settle(message_id, part, None, conversation_id)
        return result
