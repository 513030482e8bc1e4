"""What the customer-channel senders keep per reply, found again from the reply's id so an erasure removes it.

They are keyed by the reply's message id and part, or by the provider's message id, never by the conversation,
so the erasure cannot list them by its own keys. From the transcript's replies it names every part record the
senders write (Twilio's and Meta's sent parts and attempt marks) and, through the provider ids those hold, the
status records keyed by them: a WhatsApp message id carries the customer's phone number.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from gateway.redis_conn import as_str
from integrations.twilio import parts, status
from integrations.whatsapp import landed, webhook

MAX_PARTS = 12
"""More parts than any reply splits into (4,000 characters; WhatsApp takes 4,096 at once, SMS 1,600)."""


def _per_part(message_id: str, part: int) -> tuple[list[str], list[str]]:
    """(keys whose values are provider ids, other keys) for one part of one reply."""
    ref = landed.ref(message_id, part)
    return ([parts.sent_key(message_id, part), landed.landed_key(ref)],
            [parts.begun_key(message_id, part), landed.begun_key(ref)])


async def reply_keys(redis: aioredis.Redis, message_ids: Iterable[str]) -> list[str]:
    """Every sender record of these replies, and of the provider messages they became."""
    holding: list[str] = []
    found: list[str] = []
    for mid in message_ids:
        found.append(status.told_key(mid))
        for part in range(MAX_PARTS):
            with_ids, others = _per_part(mid, part)
            holding += with_ids
            found += others
    provider_ids = {as_str(v) for v in (await redis.mget(holding) if holding else []) if v}
    for pid in sorted(provider_ids):
        found += [status.sent_key(pid), webhook.sent_key(pid), webhook.status_key(pid)]
    return holding + found
