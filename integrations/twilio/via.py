"""Replies go out from the number the customer wrote to.

With several numbers or WhatsApp senders on one webhook, answering from TWILIO_FROM_NUMBER reached the
customer from a number they had never written to, and Twilio's opt-out lists and WhatsApp's 24-hour window
are kept per sender, so such a reply could also be refused.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gateway import keys
from gateway.redis_conn import as_str

log = structlog.get_logger(__name__)

KEEP_S = 180 * 86400


async def remember(redis: aioredis.Redis, customer_key: str, our_address: str) -> None:
    """Best effort: without it the reply uses the configured number. Called before the message is ingested (and
    only once it passed the signature and validation checks): remembered after, a fast bot answer to a first text
    could go out first, from the configured number."""
    try:
        await redis.set(keys.reply_via(customer_key), our_address, ex=KEEP_S)
    except (RedisError, OSError) as exc:
        log.warning("twilio_via_not_remembered", error=str(exc))


async def recall(redis: aioredis.Redis | None, customer_key: str) -> str | None:
    if redis is None:
        return None
    raw = await redis.get(keys.reply_via(customer_key))
    return as_str(raw) if raw else None


async def forget(redis: aioredis.Redis, customer_key: str) -> None:
    """The customer now writes through Meta's Cloud API (WhatsApp on both providers): answered from there."""
    await redis.delete(keys.reply_via(customer_key))
