"""Desk actions and card posts when Slack or the worker fail half-way: what the customer and the agents are left
with. Through the real gateway, worker, Redis and the Slack emulator (its fault injection for Slack's 500s)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway import keys
from gateway.policy_admin import Change, PolicyAdmin
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually
from tests.test_desk import _card_stored, desk_gw, new_card, resolve_form, sender

__all__ = ["desk_gw"]


async def test_resolve_tells_the_customer_even_when_slack_refuses_the_card_redraw(
    desk_gw: Gateway, callback: Callback
) -> None:
    """The resolve is written, then the card redrawn. Before: a redraw Slack refused (500s, a card deleted by a
    lead tidying the channel) raised before the customer's notice was queued: resolved, the learners told, but
    the customer never heard it nor got the rating question, and a second resolve was refused."""
    conv_id, card, channel = await new_card(desk_gw)
    slack = sender(desk_gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: desk_gw.rt.ops.holder(conv_id))
    view = await resolve_form(desk_gw, "U0ALICE", channel, card, conv_id)
    values = {
        "skill": {"value": {"type": "static_select", "selected_option": {"value": "billing"}}},
        "csat": {"value": {"type": "static_select", "selected_option": {"value": "yes"}}},
    }
    desk_gw.slack.fail_next("chat.update", 500, count=20)
    status, _ = await slack.submit_view("U0ALICE", view, values)
    assert status == 200
    told = await eventually(lambda: [r for r in callback.received if "resolved" in r["text"]])
    assert "1 (poor) to 5" in told[0]["text"]
    assert await desk_gw.rt.redis.exists(keys.csat_asked(conv_id))
    conv = await desk_gw.rt.store.load(conv_id)
    assert conv is not None and conv.state.value == "resolved"


@dataclass
class DiesAfterFirstCard:
    """The real desk; its first card is posted and then the attempt fails before its commit (as a crash would),
    and `meanwhile` runs before the retry (a model snapshot or the policy routing the text elsewhere)."""

    inner: Any
    meanwhile: Callable[[], Awaitable[None]]
    died: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def post_card(self, *args: Any, **kwargs: Any) -> Any:
        ref = await self.inner.post_card(*args, **kwargs)
        if not self.died:
            self.died = True
            await self.meanwhile()
            raise ConnectionError("worker lost its connection after posting")
        return ref


async def test_a_card_posted_before_a_failure_is_found_when_the_retry_routes_elsewhere(desk_gw: Gateway) -> None:
    """The retry looked for the card only in the channel its own (new) decision named: routed elsewhere now (a
    new model snapshot, a lead's change), it posted a second card and left the first live with Claim buttons and
    no thread index. Now the channels the policy routes to are searched, the first card is retired, and the
    conversation has one live card, where it is routed now. (Here a lead swaps two skills' channels.)"""

    async def reroute() -> None:
        swap = Change("swap channels", lambda p: p.with_skill_changes("billing", channel="support-payments")
                      .with_skill_changes("technical", channel="support-billing"))
        await PolicyAdmin(desk_gw.rt.redis, desk_gw.rt.policies).apply(swap, "U0LEAD")
        await desk_gw.rt.policies.current(force=True)

    await desk_gw.rt.desk.ensure_channels(["support-payments"])
    desk_gw.rt.pipeline.desk = DiesAfterFirstCard(desk_gw.rt.pipeline.desk, reroute)
    status, body = await desk_gw.post_message({"customer_id": "c-9", "message_id": "c-9-m1",
                                               "text": "I was charged twice on my invoice"})
    assert status == 202
    conv_id = body["conversation_id"]
    (live,) = await eventually(lambda: cards(desk_gw.slack, "support-payments"), timeout=20)
    await eventually(lambda: _card_stored(desk_gw, conv_id))
    conv = await desk_gw.rt.store.load(conv_id)
    assert conv is not None and conv.card_ts == live["ts"]
    (first,) = desk_gw.slack.messages("support-billing")
    assert "Claim" not in json.dumps(first.get("blocks", []))  # retired: no buttons acting on a dead card
