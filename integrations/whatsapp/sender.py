"""Replies through the WhatsApp Cloud API (Graph `/<phone number id>/messages`)."""

from __future__ import annotations

from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gateway.domain import ChannelKind, Conversation, Message
from gateway.ports import Delivery
from integrations.twilio.parts import SentParts
from integrations.twilio.retry import post_with_retry, refused_for_good
from integrations.twilio.split import chunks
from integrations.whatsapp.webhook import STATUS_TTL_S, sent_key

log = structlog.get_logger(__name__)

MAX_BODY = 4096


def _describe(payload: dict[str, Any]) -> str:
    err = payload.get("error")
    if not isinstance(err, dict):
        return ""
    return " ".join(str(err[k]) for k in ("code", "message") if err.get(k) is not None)


class WhatsAppCloudChannel:
    kind = ChannelKind.WHATSAPP

    def __init__(
        self, session: aiohttp.ClientSession, redis: aioredis.Redis, api_url: str, phone_number_id: str,
        access_token: str, retries: int = 4, base_delay: float = 0.2,
    ) -> None:
        self.session = session
        self.redis = redis
        self.parts = SentParts(redis)
        self.url = f"{api_url.rstrip('/')}/{phone_number_id}/messages"
        self.headers = {"Authorization": f"Bearer {access_token}"}
        self.retries = retries
        self.base_delay = base_delay

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        to = conversation.customer.external_id.removeprefix("whatsapp:").removeprefix("+")
        ids: list[str] = []
        parts = chunks(message.text, MAX_BODY)
        for i, part in enumerate(parts):
            if len(parts) > 1 and (earlier := await self.parts.sent(message.id, i)):
                ids.append(earlier)
                continue
            body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
                    "text": {"preview_url": False, "body": part}}
            result = await post_with_retry(
                self.session, self.url, describe=_describe, conversation_id=conversation.id, attempts=self.retries,
                base_delay=self.base_delay, json=body, headers=self.headers,
            )
            if not result.ok:
                log.warning("whatsapp_send_failed", conversation_id=conversation.id, error=result.error)
                return Delivery(ok=False, error=f"whatsapp: {result.error}",
                                external_id=",".join(ids) or None, permanent=refused_for_good(result.status))
            sent = result.payload.get("messages") or [{}]
            wamid = str(sent[0].get("id", "")) if isinstance(sent[0], dict) else ""
            ids.append(wamid)
            if len(parts) > 1:
                await self.parts.record(message.id, i, wamid, conversation.id)
            if wamid:
                try:
                    await self.redis.set(sent_key(wamid), conversation.id, ex=STATUS_TTL_S)
                except (RedisError, OSError):
                    log.warning("whatsapp_sent_unrecorded", conversation_id=conversation.id, wamid=wamid)
        log.info("whatsapp_sent", conversation_id=conversation.id, message_id=message.id, parts=len(ids))
        return Delivery(ok=True, external_id=",".join(ids))
