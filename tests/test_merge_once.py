"""One message whose email and phone both belong to the same other person merges that person once.

Before: the ingest listed the owner once per identity it held, so the worker wrote two merge records for one merge;
`/switchboard merges` showed both, and after one undo the other still read as active."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import redis.asyncio as aioredis

from gateway import keys
from gateway.redis_conn import as_str, stream_rows
from tests.harness import Gateway, eventually, make_settings, start_gateway
from tests.test_commands_support import Slash, commands_gateway

AGENT, LEAD = "U0AGENT", "U0CAROL"
EMAIL, PHONE = "jane@example.com", "+491701234567"
RECORD = re.compile(r"• `(\d+-\d+)` .*: `(per_\w+)` joined into `(per_\w+)`")


async def _two_accounts_then_proof(gw: Gateway, redis: aioredis.Redis) -> tuple[str, str, str]:
    """Jane's CRM account carries her email and phone; her second account first writes with neither, then with
    both. Returns (Jane's person, the second account's person, the id the last message was stored under)."""
    await gw.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "hello",
                           "customer": {"email": EMAIL, "phone": PHONE}})
    await gw.post_message({"customer_id": "crm-2", "message_id": "b1", "text": "hi"})
    jane, second = await redis.get(keys.ident("api:crm-1")), await redis.get(keys.ident("api:crm-2"))
    assert jane and second and jane != second
    status, body = await gw.post_message({"customer_id": "crm-2", "message_id": "b2", "text": "it's me",
                                          "customer": {"email": EMAIL, "phone": PHONE}})
    assert status == 202, body
    return as_str(jane), as_str(second), str(body["message_id"])


async def test_email_and_phone_of_one_other_person_make_one_merge_record(redis: aioredis.Redis, redis_url: str,
                                                                         tmp_path: Path) -> None:
    gw = await commands_gateway(redis_url, tmp_path, agents_raw=AGENT, leads_raw=LEAD)
    try:
        slash = Slash(gw)
        jane, second, _ = await _two_accounts_then_proof(gw, redis)

        async def merged() -> bool:
            return await redis.get(keys.ident(f"email:{EMAIL}")) == second.encode()

        await eventually(merged)
        await asyncio.sleep(0.5)  # a second record came right after the first
        assert await redis.xlen(keys.MERGES) == 1

        listed = await slash.text("merges api:crm-2", user=AGENT)
        records = RECORD.findall(listed)
        assert len(records) == 1, listed
        record, joined, into = records[0]
        assert (joined, into) == (jane, second)

        done = await slash.text(f"unmerge {record}", user=LEAD)
        assert done.startswith(f"↩️ Merge `{record}` undone"), done
        after = await slash.text("merges api:crm-2", user=AGENT)
        assert len(RECORD.findall(after)) == 1 and "(undone)" in after, after
        for ident in ("api:crm-1", f"email:{EMAIL}", f"phone:{PHONE}"):
            assert await redis.get(keys.ident(ident)) == jane.encode(), ident
    finally:
        await gw.close()


async def test_the_queued_entry_names_the_other_person_once(redis: aioredis.Redis, redis_url: str,
                                                            tmp_path: Path) -> None:
    """What the ingest hands the worker, read before any worker takes it."""
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        jane, second, stored = await _two_accounts_then_proof(gw, redis)
        entries = [f for p in range(gw.settings.partitions)
                   for _, f in stream_rows(await redis.xrange(keys.inbound_stream(p)))]
        (proof,) = [f for f in entries if f.get("mid") == stored]
        assert proof["person"] == second and proof["merge"] == jane
    finally:
        await gw.close()


async def test_an_entry_queued_before_the_fix_still_merges_once(redis: aioredis.Redis, redis_url: str,
                                                                tmp_path: Path) -> None:
    """An entry the old ingest queued, naming Jane twice, taken by the worker after the upgrade."""
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        jane, second, _ = await _two_accounts_then_proof(gw, redis)
        identity = gw.rt.pipeline.identity
        assert identity is not None
        assert len(await identity.merge(second, [jane, jane])) == 1
        assert await redis.xlen(keys.MERGES) == 1
    finally:
        await gw.close()
