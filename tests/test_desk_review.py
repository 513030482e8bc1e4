"""The desk as agents found it on day two (review findings, each failing before its fix)."""

from __future__ import annotations

import json

from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, sla_on_manual_clock
from tests.test_desk import desk_gw, new_card, sender

__all__ = ["desk_gw"]


async def test_the_agent_who_resolved_may_write_an_afterthought(desk_gw: Gateway, callback: Callback) -> None:
    """Alice claimed and transferred it, Bob resolved the new card without claiming: Bob's "forgot the tracking
    number" was refused ("only Alice, who worked it, can still reply"), though Alice had handed it over."""
    gw = desk_gw
    conv_id, card, channel = await new_card(gw)
    slack = sender(gw)
    await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    await eventually(lambda: gw.rt.ops.holder(conv_id))
    assert (await gw.rt.ops.transfer(conv_id, "U0ALICE", "technical")).ok
    moved = await eventually(lambda: cards(gw.slack, "support-technical"))
    await eventually(lambda: _card_is(gw, conv_id, moved[-1]["ts"]))
    resolved = await gw.rt.ops.resolve(conv_id, "U0BOB", skill="technical", urgency=None, mood=None)
    assert resolved.ok, resolved.message
    await slack.message("U0BOB", gw.slack.channel_id("support-technical"), "Your tracking number is 123",
                        thread_ts=moved[-1]["ts"])
    got = await eventually(lambda: [r for r in callback.received if "tracking number" in r["text"]])
    assert got[0]["text"] == "Your tracking number is 123"


async def _card_is(gw: Gateway, conv_id: str, ts: str) -> bool:
    conv = await gw.rt.store.load(conv_id)
    return conv is not None and conv.card_ts == ts


async def test_a_resolve_on_the_escalation_card_redraws_the_card_it_came_from(gateway: Gateway) -> None:
    """The billing card kept "Escalated to #support-leads" and a green Claim after the lead resolved the
    conversation on the leads' card; every click there answered "already resolved"."""
    clock = await sla_on_manual_clock(gateway)
    message = {"customer_id": "esc-1", "message_id": "m1", "text": "my invoice is wrong"}
    status, body = await gateway.post_message(message)
    assert status == 202
    conv_id = body["conversation_id"]
    billing = (await eventually(lambda: cards(gateway.slack, "support-billing")))[0]
    await eventually(lambda: gateway.rt.sla.scheduler.pending(conv_id))
    clock.advance((await gateway.rt.policies.current()).route_for("billing").sla.first_response + 1)
    await gateway.rt.sla.tick()
    leads = (await eventually(lambda: cards(gateway.slack, "support-leads")))[0]
    await eventually(lambda: _card_is(gateway, conv_id, leads["ts"]))
    slack = sender(gateway)
    channel = gateway.slack.channel_id("support-leads")
    await slack.click("U0CAROL", channel, leads, {"type": "button", "action_id": "sb_resolve", "value": conv_id})
    opened = await eventually(lambda: gateway.slack.calls_to("views.open"))
    view = opened[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    values = {"skill": {"value": {"type": "static_select", "selected_option": {"value": "billing"}}},
              "csat": {"value": {"type": "static_select", "selected_option": {"value": "no"}}}}
    assert (await slack.submit_view("U0CAROL", view, values))[0] == 200

    def old_card() -> str:
        return json.dumps(next(m for m in gateway.slack.messages("support-billing") if m["ts"] == billing["ts"]))

    await eventually(lambda: "Resolved by" in old_card())
    assert "Escalated to" not in old_card()
