"""`merges` and `unmerge`: a team that finds two customers wrongly joined can see why and take it back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway import keys
from gateway.redis_conn import as_str
from tests.harness import eventually
from tests.test_commands_support import Slash, commands_gateway

AGENT, LEAD = "U0AGENT", "U0CAROL"


async def test_an_agent_sees_a_merge_and_only_a_lead_undoes_it(redis: aioredis.Redis, redis_url: str,
                                                                tmp_path: Path) -> None:
    gw = await commands_gateway(redis_url, tmp_path, agents_raw=AGENT, leads_raw=LEAD)
    try:
        slash = Slash(gw)
        await gw.post_message({"customer_id": "crm-1", "message_id": "a1", "text": "hello",
                               "customer": {"email": "jane@example.com"}})
        await gw.post_message({"customer_id": "crm-2", "message_id": "b1", "text": "hi",
                               "customer": {"phone": "+491701234567"}})
        joined_before = await redis.get(keys.ident("api:crm-2"))
        await gw.post_message({"customer_id": "crm-3", "message_id": "c1", "text": "it's me",
                               "customer": {"email": "jane@example.com", "phone": "+491701234567"}})
        await eventually(lambda: redis.xlen(keys.MERGES))

        listed = await slash.text("merges api:crm-2", user=AGENT)
        match = re.search(r"• `(\d+-\d+)` .*: `(per_\w+)` joined into `(per_\w+)` with (.*)", listed)
        assert match, listed
        record, joined, into = match.group(1), match.group(2), match.group(3)
        assert joined == as_str(joined_before) and "api:crm-2" in match.group(4) and "(undone)" not in listed
        assert (await slash.text(f"unmerge {record}", user=AGENT)).startswith("🚫 only team leads")
        assert await redis.get(keys.ident("api:crm-2")) == into.encode()

        done = await slash.text(f"unmerge {record}", user=LEAD)
        assert done.startswith(f"↩️ Merge `{record}` undone"), done
        assert await redis.get(keys.ident("api:crm-2")) == joined.encode()
        assert await redis.get(keys.ident("phone:+491701234567")) == joined.encode()
        announced = await eventually(lambda: [m for m in gw.slack.messages("support-leads")
                                              if "undid customer merge" in m.get("text", "")])
        assert f"<@{LEAD}>" in announced[0]["text"]
        rows: Any = await redis.xrange(keys.AUDIT)
        audit = [json.loads(f[b"data"]) for _, f in rows]
        assert any(a["action"] == "unmerge" and a["user"] == LEAD for a in audit)

        assert "undone already" in await slash.text(f"unmerge {record}", user=LEAD)
        assert "(undone)" in await slash.text(f"merges {joined}", user=AGENT)
        assert "no customer 'api:nobody' is known" in await slash.text("merges api:nobody", user=AGENT)
        assert "usage: unmerge" in await slash.text("unmerge yesterday", user=LEAD)
    finally:
        await gw.close()
