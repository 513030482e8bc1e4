"""A long customer message reaches the agent whole: the card shows 500 characters, the thread the rest."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from tests.harness import Gateway, cards, eventually, stored_card


def _thread_texts(gateway: Gateway, card: dict[str, str]) -> list[str]:
    channel = gateway.slack.channel_id("support-billing")
    return [m.get("text", "") for m in gateway.slack.replies(channel, card["ts"])[1:]]


async def test_the_end_of_a_long_message_is_in_the_thread_once(gateway: Gateway, redis: aioredis.Redis) -> None:
    first = "I was charged twice on my invoice and the refund never came. " * 55 + "ORDER NUMBER IS 99-1234"
    assert 3000 < len(first) <= 4000
    _, answer = await gateway.post_message({"customer_id": "long-1", "message_id": "l1", "text": first})
    card, conv_id = await stored_card(gateway, "support-billing")
    assert "ORDER NUMBER IS 99-1234" not in json.dumps(card["blocks"])  # the card shows the start
    assert "full words are in the thread" in json.dumps(card["blocks"])
    (whole,) = await eventually(lambda: [t for t in _thread_texts(gateway, card) if "99-1234" in t])
    assert whole.endswith("ORDER NUMBER IS 99-1234")
    follow = "and one more thing: " + "the app logs me out. " * 140 + "CALL ME ON +49 170 1234567"
    await gateway.post_message({"customer_id": "long-1", "message_id": "l2", "text": follow})
    await eventually(lambda: [t for t in _thread_texts(gateway, card) if "+49 170 1234567" in t])
    texts = _thread_texts(gateway, card)
    assert len([t for t in texts if "99-1234" in t]) == 1 and len([t for t in texts if "1234567" in t]) == 1
    assert answer["conversation_id"] == conv_id


async def test_a_short_message_adds_nothing_to_the_thread(gateway: Gateway) -> None:
    await gateway.post_message({"customer_id": "short-1", "message_id": "s1", "text": "charged twice on my invoice"})
    card, _ = await stored_card(gateway, "support-billing")
    assert _thread_texts(gateway, card) == []


async def test_a_transferred_card_has_the_full_text_in_its_own_thread(gateway: Gateway) -> None:
    first = "My invoice shows a charge I do not recognise. " * 20 + "REFERENCE 77-4242"
    await gateway.post_message({"customer_id": "long-2", "message_id": "t1", "text": first})
    _, conv_id = await stored_card(gateway, "support-billing")
    assert (await gateway.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    (moved,) = await eventually(lambda: cards(gateway.slack, "support-technical"))
    technical = gateway.slack.channel_id("support-technical")

    def whole() -> list[str]:
        return [m.get("text", "") for m in gateway.slack.replies(technical, moved["ts"])[1:]
                if "REFERENCE 77-4242" in m.get("text", "")]

    assert len(await eventually(whole)) == 1
