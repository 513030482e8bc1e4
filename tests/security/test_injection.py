"""Hostile customer text must stay inert in Slack: no pings, no disguised links, no breaking out of quotes."""

from __future__ import annotations

import json
import re

import redis.asyncio as aioredis

from tests.harness import Gateway, cards, eventually

HOSTILE = (
    "<!channel> <!here> <!everyone> <@U0ALICE> <#C0123456|general> <!subteam^S123|@leads> "
    "<https://evil.example/login|Reset your password> <mailto:x@evil.example|support> "
    "&lt;!channel&gt; *bold* _it_ ~s~ `code` ```block``` \n> fake quote\n>>> fake block quote"
)
SLACK_CONTROL = re.compile(r"<[!@#]|<(?:https?|mailto):")


def all_text(node: object) -> list[str]:
    """Every string Slack would render from blocks, attachments and fallback text."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "fallback", "pretext", "title", "value") and isinstance(value, str):
                out.append(value)
            else:
                out += all_text(value)
    elif isinstance(node, list):
        for value in node:
            out += all_text(value)
    return out


async def test_hostile_text_and_profile_are_inert_on_the_card_and_in_the_thread(gateway: Gateway) -> None:
    profile = {"name": "<!channel> Eve <https://evil.example|bank>", "tier": "<@U0ALICE>"}
    status, _ = await gateway.post_message({"customer_id": "eve", "message_id": "m-1", "text": HOSTILE,
                                            "customer": profile})
    assert status == 202
    card = (await eventually(lambda: [c for ch in ("support-billing", "support-general", "support-technical",
                                                   "support-account", "support-shipping", "support-leads")
                                      for c in cards(gateway.slack, ch)]))[0]
    status, _ = await gateway.post_message({"customer_id": "eve", "message_id": "m-2", "text": HOSTILE})
    assert status == 202
    channel = next(c.params["channel"] for c in gateway.slack.calls_to("chat.postMessage"))
    replies = await eventually(lambda: gateway.slack.replies(channel, card["ts"])[1:])
    for message in (card, *replies):
        texts = all_text({"text": message.get("text"), "blocks": message.get("blocks", [])})
        assert texts
        for text in texts:
            assert not SLACK_CONTROL.search(text), f"live Slack control sequence in: {text[:200]!r}"
        assert "&lt;!channel&gt;" in json.dumps(message)  # shown as text, escaped once
    for call in gateway.slack.calls_to("chat.postMessage"):
        assert call.params.get("link_names") in (None, False, "false", "0")
        assert call.params.get("unfurl_links") in (False, "false", "0")
    assert not gateway.slack.calls_to("chat.postEphemeral")


async def test_message_ids_of_different_customers_do_not_collide(gateway: Gateway, redis: aioredis.Redis) -> None:
    a = await gateway.post_message({"customer_id": "alice-co", "message_id": "m-1", "text": "my invoice is wrong"})
    b = await gateway.post_message({"customer_id": "bob-co", "message_id": "m-1", "text": "where is my parcel"})
    assert a[0] == b[0] == 202
    assert b[1]["duplicate"] is False
    assert b[1]["conversation_id"] != a[1]["conversation_id"]
