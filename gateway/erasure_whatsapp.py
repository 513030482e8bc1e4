"""WhatsApp's status records of an erased customer: a Meta message id is base64 that carries their number.

Kept outside the conversation's own keys (a stream of statuses, records per message id), so they are found by
conversation, by the reply's message id, or by the customer's number inside the id.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from gateway.domain import e164
from gateway.erasure_scope import WHOLE
from gateway.redis_conn import SCAN_CHUNK, as_str, xdel_where
from integrations.whatsapp.wamid import carries
from integrations.whatsapp.webhook import STATUS_STREAM, sent_key, status_key


def numbers(idents: Sequence[str], scope: str) -> set[str]:
    """The phone numbers (digits) a WhatsApp message id of the erased customer would carry: their WhatsApp
    number, and with a whole person every phone they gave (in a narrower erasure a shared phone may be
    another account's WhatsApp number, whose statuses are that customer's)."""
    found = set()
    for ident in idents:
        kind, _, raw = ident.partition(":")
        if kind == "whatsapp" or (kind == "phone" and scope == WHOLE):
            phone = e164(raw)
            if phone:
                found.add(phone.removeprefix("+"))
    return found

async def drop_statuses(redis: aioredis.Redis, wamids: set[str], numbers: set[str]) -> int:
    """WhatsApp's status records outside the conversation's own keys: stream entries and records of a
    reply whose conversation is unknown (the stream's `conversation_id` is blank when the send was never
    attributed), found by the reply's wamid or the customer's number inside it. Keys hold them 30 days and
    the stream 10,000 entries, and each wamid carries the customer's number. (Entries naming an erased
    conversation go with the other streams that name it, `Eraser._outcome_streams`.)"""
    if not (numbers or wamids):
        return 0

    def theirs(wamid: str) -> bool:
        return wamid in wamids or any(carries(wamid, n) for n in numbers)

    dropped = await xdel_where(redis, STATUS_STREAM, lambda data: theirs(data.get("wamid", "")))
    records = []
    for prefix in (status_key(""), sent_key("")):
        async for key in redis.scan_iter(match=f"{prefix}*", count=SCAN_CHUNK):
            if theirs(as_str(key).removeprefix(prefix)):
                records.append(key)
    if records:
        await redis.delete(*records)
    return len(dropped)
