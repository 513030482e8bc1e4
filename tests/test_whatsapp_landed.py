"""A reply part Meta took but whose answer was lost is not sent again: the customer gets one message, not two.

Meta cannot be asked what it took; each part is sent with callback data naming it, and the status webhook that
echoes it says the part landed (`integrations.whatsapp.landed`). Until that status or a bound, no resend.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from integrations.whatsapp.landed import UNSETTLED_S, Landed
from integrations.whatsapp.webhook import STATUS_STREAM, sent_key
from tests.test_whatsapp import TAKEN_THEN_502, TAKEN_THEN_HANG, WA_ID, Env, delivery, env

__all__ = ["env"]
WAITING = "whatsapp: earlier attempt may have landed; waiting for Meta's status"


def _conv() -> Conversation:
    return Conversation(id="conv_once", customer=Customer(key=f"whatsapp:+{WA_ID}", channel=ChannelKind.WHATSAPP,
                                                          external_id=f"+{WA_ID}"))


def _reply(text: str = "Your refund is on its way.", mid: str = "out-once") -> Message:
    return Message(id=mid, direction=Direction.OUTBOUND, channel=ChannelKind.WHATSAPP, text=text, author="Alice")


def status(taken: dict[str, Any], kind: str = "sent", **extra: Any) -> dict[str, Any]:
    """What Meta's status webhook says of a message it took: its wamid and our callback data, echoed."""
    return {"id": taken["id"], "status": kind, "timestamp": "1717000300", "recipient_id": WA_ID,
            "biz_opaque_callback_data": taken["biz_opaque_callback_data"], **extra}


async def _lose_the_answer(env: Env, how: str) -> None:
    """Meta takes the part and the sender never learns its wamid."""
    if how == "worker died mid-send":
        env.graph.script = [TAKEN_THEN_HANG]
        task = asyncio.create_task(env.channel.send(_conv(), _reply()))
        for _ in range(200):
            if env.graph.taken:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return
    env.channel.timeout_s = 0.3
    env.graph.script = [TAKEN_THEN_502 if how == "502" else TAKEN_THEN_HANG]
    first = await env.channel.send(_conv(), _reply())
    assert not first.ok and not first.permanent and first.error == WAITING
    assert len(env.graph.calls) == 1  # the sender's own retry did not resend it


@pytest.mark.parametrize("how", ["502", "timeout", "worker died mid-send"])
async def test_a_part_taken_but_unanswered_is_not_sent_again_once_its_status_came(env: Env, how: str) -> None:
    await _lose_the_answer(env, how)
    again = await env.channel.send(_conv(), _reply())  # the worker's retry, seconds later: Meta has not said yet
    assert not again.ok and not again.permanent and again.error == WAITING and len(env.graph.calls) == 1
    assert await env.deliver(delivery(statuses=[status(env.graph.taken[0])])) == 200
    done = await env.channel.send(_conv(), _reply())
    assert done.ok and done.external_id == env.graph.taken[0]["id"] == "wamid.OUT1"
    assert len(env.graph.calls) == 1 and len(env.graph.taken) == 1
    # The status was the conversation's even though the sender never saw the wamid.
    entries: Any = await env.redis.xrange(STATUS_STREAM)
    assert [(e[b"wamid"], e[b"conversation_id"]) for _, e in entries] == [(b"wamid.OUT1", b"conv_once")]


async def test_without_a_status_the_part_is_sent_again_only_after_the_bound(env: Env) -> None:
    """At least once: a message twice beats a reply lost for good, but not before Meta had time to say."""
    assert 60 <= UNSETTLED_S <= 120 and env.channel.unsettled_s == UNSETTLED_S
    env.graph.script = [TAKEN_THEN_502]
    for _ in range(3):  # the first send, then retries well inside the bound
        result = await env.channel.send(_conv(), _reply())
        assert not result.ok and not result.permanent and result.error == WAITING
    assert len(env.graph.calls) == 1
    env.channel.unsettled_s = 0.3  # as if the bound had passed with no status
    await asyncio.sleep(0.4)
    result = await env.channel.send(_conv(), _reply())
    assert result.ok and result.external_id == "wamid.OUT2" and len(env.graph.calls) == 2
    again = await env.channel.send(_conv(), _reply())  # and that one's answer is kept: no third
    assert again.ok and again.external_id == "wamid.OUT2" and len(env.graph.calls) == 2


async def test_a_later_part_taken_but_unanswered_is_not_sent_again_nor_the_earlier_one(env: Env) -> None:
    env.graph.script = [200, TAKEN_THEN_502]
    long = "🙂🙂 " * 1000  # 5,000 UTF-16 units (an emoji counts two): two parts
    first = await env.channel.send(_conv(), _reply(long))
    assert not first.ok and first.error == WAITING and first.external_id == "wamid.OUT1"
    assert await env.deliver(delivery(statuses=[status(env.graph.taken[1], "delivered")])) == 200
    done = await env.channel.send(_conv(), _reply(long))
    assert done.ok and done.external_id == "wamid.OUT1,wamid.OUT2" and len(env.graph.calls) == 2


async def test_a_refusal_that_took_nothing_is_sent_again_at_once(env: Env) -> None:
    env.graph.script = [429] * 4
    refused = await env.channel.send(_conv(), _reply())
    assert not refused.ok and not refused.permanent and "HTTP 429" in (refused.error or "")
    result = await env.channel.send(_conv(), _reply())
    assert result.ok and result.external_id == "wamid.OUT5" and len(env.graph.calls) == 5


async def test_a_500_graph_wrote_itself_took_nothing_and_is_sent_again_at_once(env: Env) -> None:
    """Graph's own error object in a 5xx means Meta answered: it was waited out for 90 s like a lost answer."""
    env.graph.script = [500]  # the stand-in answers Graph's error body
    result = await env.channel.send(_conv(), _reply())
    assert result.ok and len(env.graph.calls) == 2
    env.graph.script = [500] * 4
    failed = await env.channel.send(_conv(), _reply("another", mid="out-2"))
    assert not failed.ok and "HTTP 500" in (failed.error or "") and len(env.graph.calls) == 6
    again = await env.channel.send(_conv(), _reply("another", mid="out-2"))  # the retry: at once, not after 90 s
    assert again.ok and len(env.graph.calls) == 7


async def test_the_status_webhook_records_the_landed_part(env: Env) -> None:
    """Signed through the real endpoint; a status with someone else's callback data (or none) is left alone."""
    data = json.dumps({"sb1": "out-hook:0", "conv": "conv_once"})
    ours = {"id": "wamid.HOOK1", "status": "sent", "timestamp": "1717000300", "recipient_id": WA_ID,
            "biz_opaque_callback_data": data}
    theirs = {**ours, "id": "wamid.HOOK2", "biz_opaque_callback_data": "campaign-7"}
    plain = {**ours, "id": "wamid.HOOK3"}
    del plain["biz_opaque_callback_data"]
    assert await env.deliver(delivery(statuses=[ours, theirs, plain])) == 200
    landed = Landed(env.redis)
    assert await landed.found("out-hook", 0) == "wamid.HOOK1" and await landed.found("out-hook", 1) is None
    assert await env.redis.get(sent_key("wamid.HOOK1")) == b"conv_once"
    assert await env.redis.get(sent_key("wamid.HOOK2")) is None and await env.redis.get(sent_key("wamid.HOOK3")) is None
    keys: Any = await env.redis.keys("sb:whatsapp:landed:*")
    assert keys == [b"sb:whatsapp:landed:out-hook:0"]


async def test_a_failed_status_counts_as_landed_and_is_told_to_the_agent_once(env: Env) -> None:
    """Meta took it and failed it: a resend would not reach the customer either; the agent hears why, once."""
    env.graph.script = [TAKEN_THEN_502]
    assert not (await env.channel.send(_conv(), _reply())).ok
    failed = status(env.graph.taken[0], "failed", errors=[{"code": 131047, "title": "Re-engagement message"}])
    for _ in range(2):  # Meta re-delivers
        assert await env.deliver(delivery(statuses=[failed])) == 200
    assert env.failed == [("conv_once", "WhatsApp", "131047 Re-engagement message")]
    result = await env.channel.send(_conv(), _reply())
    assert result.ok and result.external_id == "wamid.OUT1" and len(env.graph.calls) == 1
