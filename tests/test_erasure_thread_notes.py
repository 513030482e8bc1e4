"""An erasure deletes every post of ours in the customer's card threads, not only our copies of their messages.
Through the real gateway, worker, Redis, the web chat socket and the Slack emulator.

Before: only posts tagged `switchboard_message` (the copies of customer messages) were deleted. Our other thread
notes stayed, and some say what the customer said or did: "⭐ The customer rated this conversation 1/5." (a web
chat widget rating or a typed one), "📵 The customer texted *STOP*", a "🔁 The customer wrote again" broadcast.
The report listed only the agents' messages as kept, so the erasure looked complete.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from gateway import csat
from tests.conftest import Callback
from tests.harness import Gateway, eventually, forget, make_settings, start_gateway, stored_card
from tests.test_webchat_csat_desk import _chat, _notes, _rate, _resolved_asking, gw

__all__ = ["gw"]


def _post(g: Gateway, channel: str, card: dict[str, Any], message: dict[str, Any]) -> str:
    """A message someone else posted in the card's thread, straight into the emulator's Slack."""
    ts = g.slack.next_ts()
    g.slack.add_message(g.slack.channel(channel), {"type": "message", "ts": ts, **message}, card["ts"])
    return ts


def _ours(g: Gateway, channel: str, card: dict[str, Any]) -> list[str]:
    """What the app itself still has in the card's thread (the card excluded)."""
    return [m["text"] for m in g.slack.replies(channel, card["ts"])[1:] if m.get("bot_id") == g.slack.bot_id]


async def test_a_widget_rating_note_is_erased_with_the_customer(gw: Gateway, redis: aioredis.Redis) -> None:
    ws, conv_id = await _chat(gw, "I was charged twice on my invoice")
    try:
        card, channel = await _resolved_asking(gw, ws, conv_id, "support-billing")
        await _rate(ws, 1, "Terrible. email me at alice.private@example.org")
        await eventually(lambda: _notes(gw, channel, card))
    finally:
        await ws.close()
    # In the thread as Slack holds them: an agent's own message, and one of another app (a ticketing bot).
    agent_ts, other_ts = _post(gw, channel, card, {"user": "U0ALICE", "text": "sorry to hear, noted"}), _post(
        gw, channel, card, {"bot_id": "B0TICKETS", "text": "Ticket SUP-12 linked"})
    conv = await gw.rt.store.load(conv_id)
    assert conv is not None
    report = await forget(gw, conv.customer.key)

    assert _notes(gw, channel, card) == [], "the rating note outlived the erasure"
    assert _ours(gw, channel, card) == []
    thread = json.dumps(gw.slack.replies(channel, card["ts"]))
    assert "charged twice" not in thread and "alice.private" not in thread and "Customer data erased" in thread
    # What is left is said: the agent's own message, and nothing of ours.
    assert report["kept"] == [f"agent message {agent_ts} in {channel} (delete in Slack)",
                              f"another app's message {other_ts} in {channel} (delete in Slack)"]


async def test_a_typed_rating_and_a_reopen_note_are_erased_with_the_customer(
    redis: aioredis.Redis, redis_url: str, tmp_path: Any, callback: Callback
) -> None:
    g = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    try:
        _, body = await g.post_message({"customer_id": "c9", "message_id": "m1",
                                        "text": "my invoice is wrong, a person please"})
        card, conv_id = await stored_card(g, "support-billing")
        assert conv_id == body["conversation_id"]
        channel = g.slack.channel_id("support-billing")
        assert (await g.rt.ops.resolve(conv_id, "U0ALICE", skill="billing", urgency=None, mood=None)).ok
        await csat.ask(redis, conv_id, "resolve-1")  # what Resolve does with "ask for a rating"
        await g.post_message({"customer_id": "c9", "message_id": "m2", "text": "1"})
        await eventually(lambda: _notes(g, channel, card))
        await g.post_message({"customer_id": "c9", "message_id": "m3", "text": "still wrong, see attachment"})
        await eventually(lambda: [t for t in _ours(g, channel, card) if "reopened" in t])

        report = await forget(g, "api:c9")
        assert _ours(g, channel, card) == [], _ours(g, channel, card)
        assert _notes(g, channel, card) == []
        assert report["kept"] == []
    finally:
        await g.close()
