"""An external bot behind a signed webhook, as a drop-in `Automation`.

Whatever goes wrong on the other side (timeout, 5xx, malformed JSON, a reply that is neither an
answer nor a handoff) becomes a handoff with the reason, so a broken bot never strands a customer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.domain import Conversation, Scores
from gateway.ports import BotReply
from integrations.webhook.signature import HEADER, sign

log = structlog.get_logger("switchboard.automation.webhook")


class WebhookReply(BaseModel):
    """Exactly one of `answer` or `handoff` (the reason); extra fields are ignored for forward compat."""

    model_config = ConfigDict(extra="ignore")

    answer: str | None = Field(default=None, max_length=4000)
    handoff: str | None = Field(default=None, max_length=500)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    intent: str | None = Field(default=None, max_length=80)

    @model_validator(mode="after")
    def _one(self) -> WebhookReply:
        if bool(self.answer and self.answer.strip()) == bool(self.handoff and self.handoff.strip()):
            raise ValueError("reply must have exactly one of 'answer' or 'handoff'")
        return self


def payload(conversation: Conversation, scores: Scores) -> dict[str, Any]:
    """What the external bot sees: enough to answer, no Slack internals."""
    c = conversation
    return {
        "conversation": {
            "id": c.id,
            "state": c.state.value,
            "skill": c.skill,
            "channel": c.customer.channel.value,
            "customer": {"key": c.customer.key, **c.customer.profile.model_dump(exclude_none=True)},
        },
        "transcript": [
            {"direction": m.direction.value, "text": m.text, "author": m.author, "at": m.at.isoformat()}
            for m in c.messages
        ],
        "scores": scores.model_dump(mode="json"),
    }


class WebhookAutomation:
    """Implements `gateway.ports.Automation` by POSTing to `url`."""

    def __init__(
        self,
        url: str,
        secret: str,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("webhook secret must not be empty")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._session = session
        self._clock = clock

    async def handle(self, conversation: Conversation, scores: Scores) -> BotReply:
        bound = log.bind(conversation_id=conversation.id, url=self.url)
        body = json.dumps(payload(conversation, scores), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", HEADER: sign(self.secret, body, int(self._clock()))}
        try:
            raw = await self._post(body, headers)
            reply = WebhookReply.model_validate_json(raw)
        except TimeoutError:
            return self._fail(bound, f"external bot timed out after {self.timeout:g}s")
        except aiohttp.ClientResponseError as exc:
            return self._fail(bound, f"external bot returned HTTP {exc.status}")
        except aiohttp.ClientError as exc:
            return self._fail(bound, f"external bot unreachable ({type(exc).__name__})")
        except ValidationError as exc:
            return self._fail(bound, f"external bot sent an invalid reply ({exc.errors()[0]['msg']})")
        if reply.handoff:
            bound.info("bot_handoff", reasons=[reply.handoff], source="webhook")
            return BotReply(answered=False, handoff_reason=reply.handoff.strip(), intent=reply.intent)
        bound.info("bot_answered", intent=reply.intent, confidence=reply.confidence, source="webhook")
        return BotReply(answered=True, text=reply.answer, confidence=reply.confidence, intent=reply.intent)

    async def _post(self, body: bytes, headers: dict[str, str]) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with asyncio.timeout(self.timeout):
            if self._session is not None:
                async with self._session.post(self.url, data=body, headers=headers, timeout=timeout) as resp:
                    resp.raise_for_status()
                    return await resp.read()
            async with aiohttp.ClientSession() as session, session.post(
                self.url, data=body, headers=headers, timeout=timeout
            ) as resp:
                resp.raise_for_status()
                return await resp.read()

    @staticmethod
    def _fail(bound: Any, reason: str) -> BotReply:
        bound.warning("bot_handoff", reasons=[reason], source="webhook")
        return BotReply(answered=False, handoff_reason=reason)
