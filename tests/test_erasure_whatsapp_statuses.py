"""Meta's message ids carry the customer's phone number: they are erased with the customer and never logged.
Through the real gateway, worker, Redis, the Slack emulator and a stand-in of Meta's Graph API that hands out
wamids as Meta does (base64 whose payload starts with the recipient's number).

Before: the status stream `sb:whatsapp:statuses` kept every status (wamid, conversation id) after the customer
was erased, 10,000 entries deep, linking the erased conversation to their number; and each status was logged as
`whatsapp_status wamid=wamid.HBgN…`, which the PII masking cannot read inside base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from integrations.whatsapp.wamid import carries, fingerprint
from integrations.whatsapp.webhook import STATUS_STREAM
from tests.harness import Gateway, eventually, forget
from tests.test_identity import _everything_in
from tests.test_whatsapp import APP_SECRET, WA_ID, Graph, delivery, text
from tests.test_whatsapp_reengage import _claimed_card, _meta_gateway

WAMID = re.compile(r"wamid\.[A-Za-z0-9+/=_-]+")


def realistic(n: int, number: str = WA_ID) -> str:
    """A wamid as Meta builds one: the number in ASCII inside a base64 record."""
    record = b"\x1c\x18" + bytes([len(number)]) + number.encode() + b"\x15\x02\x00\x11\x18\x12"
    return "wamid." + base64.b64encode(record + f"{n:020X}".encode() + b"\x00").decode()


class MetaGraph(Graph):
    def _take(self, body: dict[str, Any]) -> str:
        wamid = realistic(len(self.calls))
        self.taken.append({**body, "id": wamid})
        return wamid


@pytest.fixture
async def meta(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[tuple[Gateway, Graph]]:
    async for pair in _meta_gateway(redis_url, tmp_path, monkeypatch, None, MetaGraph()):
        yield pair


async def _meta_posts(gw: Gateway, payload: dict[str, Any]) -> None:
    raw = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    async with gw.session.post(f"{gw.url}/channels/whatsapp", data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature}) as resp:
        assert resp.status == 200


def _status(wamid: str, kind: str, callback: str | None = None) -> dict[str, Any]:
    return {"id": wamid, "status": kind, "timestamp": "1717000300", "recipient_id": WA_ID,
            **({"biz_opaque_callback_data": callback} if callback else {})}


def test_the_stand_in_wamids_carry_the_number_as_metas_do() -> None:
    wamid = realistic(7)
    assert WA_ID not in wamid and WA_ID.encode() in base64.b64decode(wamid.removeprefix("wamid."))
    assert carries(wamid, WA_ID) and not carries(wamid, "4917012345679")
    assert carries("wamid.HBgMNDQ3NzAwOTAwNTU1FQIAERgSQzk2", "447700900555")  # the review's real one


async def test_status_records_and_logs_hold_no_wamid_of_an_erased_customer(
    meta: tuple[Gateway, MetaGraph], redis: aioredis.Redis
) -> None:
    gw, graph = meta
    with capture_logs() as logs:
        await _meta_posts(gw, delivery([text(realistic(900), "I was charged twice on my invoice")]))
        thread, conv_id = await _claimed_card(gw)
        first = await thread.reply("Refunded, sorry about that")
        await eventually(lambda: thread.delivered(first))
        (taken,) = graph.taken
        ours = taken["biz_opaque_callback_data"]
        await _meta_posts(gw, delivery(statuses=[_status(taken["id"], "sent", ours),
                                                 _status(taken["id"], "delivered", ours)]))
        # A status of a reply whose send record was lost (`whatsapp_sent_unrecorded`): not attributed to any
        # conversation, but its wamid names the customer's number all the same.
        stray = realistic(901)
        await _meta_posts(gw, delivery(statuses=[_status(stray, "read")]))
        rows: Any = await redis.xrange(STATUS_STREAM)
        assert {(f[b"wamid"].decode(), f[b"conversation_id"].decode()) for _, f in rows} == {
            (taken["id"], conv_id), (stray, "")}


    await forget(gw, f"whatsapp:+{WA_ID}")
    assert await redis.xrange(STATUS_STREAM) == [], "the status stream outlived the erasure"
    left = await _everything_in(redis)
    assert WA_ID not in left and "charged twice" not in left
    assert not [w for w in WAMID.findall(left) if carries(w, WA_ID)]

    logged = json.dumps(logs, default=str)
    assert not [w for w in WAMID.findall(logged) if carries(w, WA_ID)], "a wamid was logged in clear"
    statuses = [e for e in logs if e["event"] == "whatsapp_status"]
    assert {e["wamid_hash"] for e in statuses} == {fingerprint(taken["id"]), fingerprint(stray)}
