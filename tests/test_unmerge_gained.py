"""`unmerge` gives back what the wrongly merged customer gained while merged, not only what the merge moved.

Found in review: an SMS from the merged customer's phone registered its number to the other person, so
after the undo it stayed there, and the next text from that phone (number on one side, phone on the other)
merged the two customers again; the conversation it started stayed in the other customer's history.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.redis_conn import as_str, stream_rows
from tests.harness import Gateway, eventually
from tests.test_optout import _text
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["sms_gw"]
PHONE = "+491701234567"


async def _person(redis: aioredis.Redis, ident: str) -> str:
    return as_str(await redis.get(keys.ident(ident)))


async def _convs(redis: aioredis.Redis, person: str) -> set[str]:
    return {as_str(c) for c in await redis.zrange(keys.person_conversations(person), 0, -1)}


async def test_an_sms_number_and_its_conversation_go_back_with_the_phone(
    sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    gw, _ = sms_gw
    identity = gw.rt.pipeline.identity
    assert identity is not None
    await gw.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "hello",
                           "customer": {"email": "jane@example.com"}})
    await gw.post_message({"customer_id": "crm-2", "message_id": "b1", "text": "hi", "customer": {"phone": PHONE}})
    joined = await _person(redis, f"phone:{PHONE}")
    # The integrator sends one record with both: the two customers are merged (wrongly, a team finds later).
    await gw.post_message({"customer_id": "crm-3", "message_id": "c1", "text": "it's me",
                           "customer": {"email": "jane@example.com", "phone": PHONE}})
    rows: Any = await eventually(lambda: redis.xrange(keys.MERGES))
    ((record, merge),) = stream_rows(rows)
    assert merge["from"] == joined
    into = merge["into"]

    await _text(gw, 1, "where is my parcel?", frm=PHONE)  # while merged: registered to `into`
    assert await eventually(lambda: _person(redis, f"sms:{PHONE}")) == into
    sms_conv = as_str(await eventually(lambda: redis.get(keys.customer_conversation(f"sms:{PHONE}"))))
    assert sms_conv in await _convs(redis, into)

    assert await identity.unmerge(record)
    assert await _person(redis, f"phone:{PHONE}") == joined
    assert await _person(redis, f"sms:{PHONE}") == joined
    assert sms_conv in await _convs(redis, joined) and sms_conv not in await _convs(redis, into)
    assert f"sms:{PHONE}" in await identity.identities(joined)
    assert f"sms:{PHONE}" not in await identity.identities(into)

    await _text(gw, 2, "any news?", frm=PHONE)

    async def threaded() -> bool:
        return len(await redis.lrange(keys.transcript(sms_conv), 0, -1)) >= 2

    await eventually(threaded)
    assert len(stream_rows(await redis.xrange(keys.MERGES))) == 2  # the merge and its undo; no new merge
    assert await _person(redis, f"sms:{PHONE}") == joined
