"""Replies to API customers: a signed POST to the team's callback URL."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import structlog

from gateway.domain import ChannelKind, Conversation, Message
from gateway.ports import Delivery
from integrations.webhook.signature import HEADER, sign

log = structlog.get_logger(__name__)


class ApiCallbackChannel:
    kind = ChannelKind.API

    def __init__(self, url: str | None, secret: str, session: aiohttp.ClientSession, retries: int = 3) -> None:
        self.url = url
        self.secret = secret
        self.session = session
        self.retries = retries

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        if not self.url:
            # A refusal for good: no retry will find a URL that is not configured, and half an hour of them
            # only kept the agent from hearing at once that the customer must be reached another way.
            return Delivery(ok=False, error="no callback URL configured (SWITCHBOARD_API_CALLBACK_URL)",
                            permanent=True)
        body = json.dumps(
            {
                "conversation_id": conversation.id,
                "customer_id": conversation.customer.external_id,
                "message_id": message.id,
                "text": message.text,
                "author": message.author,
                "at": message.at.isoformat(),
            }
        ).encode()
        last = "no attempt"
        for attempt in range(self.retries):
            pause = 0.2 * 2**attempt
            try:
                # No redirects: aiohttp follows a 301/302 with a GET and no body, whose 200 read as delivered
                # (the reply was lost behind a ✅), and would carry our signature to wherever it pointed.
                async with self.session.post(
                    self.url,
                    data=body,
                    headers={"Content-Type": "application/json", HEADER: sign(self.secret, body)},
                    timeout=aiohttp.ClientTimeout(total=10),
                    allow_redirects=False,
                ) as resp:
                    if resp.status < 300:
                        return Delivery(ok=True)
                    if resp.status < 500 and resp.status != 429:  # the endpoint refuses it: resending won't help
                        where = f" to {resp.headers.get('Location', '?')}" if resp.status < 400 else ""
                        return Delivery(ok=False, error=f"callback answered HTTP {resp.status}{where}",
                                        permanent=True)
                    last = f"callback answered HTTP {resp.status}"
                    pause = max(pause, _retry_after(resp.headers.get("Retry-After")))
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"callback unreachable: {exc.__class__.__name__}"
            log.warning("api_callback_retry", conversation_id=conversation.id, attempt=attempt + 1, error=last)
            if attempt + 1 < self.retries:
                await asyncio.sleep(pause)
        return Delivery(ok=False, error=last)


def _retry_after(value: str | None) -> float:
    """A 429's Retry-After in seconds, capped: a longer wait is the worker's delayed retry's job."""
    try:
        return min(max(float(value or 0), 0.0), 5.0)
    except ValueError:
        return 0.0
