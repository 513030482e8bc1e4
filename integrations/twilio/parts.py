"""Which parts of a long reply the provider already took, so a retry sends only the rest.

A reply over the provider's limit goes out as several messages. When part 2 failed, the whole send
failed and its retry began again at part 1: the customer got part 1 once per attempt (up to a dozen
times). Each part's provider id is kept under the message id, which is the same on every attempt.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gateway import keys
from gateway.redis_conn import as_str

log = structlog.get_logger(__name__)

KEEP_S = 2 * 86400
"""Longer than any retry schedule of a reply (about half an hour)."""


def sent_key(message_id: str, part: int) -> str:
    return f"{keys.PREFIX}sent:{message_id}:{part}"


def begun_key(message_id: str, part: int) -> str:
    return f"{keys.PREFIX}sending:{message_id}:{part}"


class SentParts:
    def __init__(self, redis: aioredis.Redis | None) -> None:
        self.redis = redis

    async def sent(self, message_id: str, part: int) -> str | None:
        """The provider's id for a part sent on an earlier attempt, or None."""
        if self.redis is None:
            return None
        raw = await self.redis.get(sent_key(message_id, part))
        return as_str(raw) if raw is not None else None

    async def begin(self, message_id: str, part: int, now: float) -> float | None:
        """Marks the first attempt at this part; answers when an earlier attempt began, or None.

        An earlier attempt may have reached the provider with its answer lost (`integrations.twilio.landed`)."""
        if self.redis is None:
            return None
        earlier = await self.redis.set(begun_key(message_id, part), repr(now), nx=True, get=True, ex=KEEP_S)
        return float(as_str(earlier)) if earlier is not None else None

    async def record(self, message_id: str, part: int, provider_id: str, conversation_id: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(sent_key(message_id, part), provider_id or "sent", ex=KEEP_S)
        except (RedisError, OSError):  # sent is sent: a lost note only risks this one part again
            log.warning("reply_part_unrecorded", conversation_id=conversation_id, message_id=message_id, part=part)
