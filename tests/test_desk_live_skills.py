"""A skill a lead adds from Slack is on every card's Transfer menu and preselected on its Resolve form.

Found in review: the desk's skill list was fixed at start, so after `/switchboard skill add warranty …` the
warranty card offered no way back to warranty, and its Resolve form preselected `billing`: an agent who
submitted it untouched taught the skill learner the wrong label.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import gateway.app as gateway_app
from integrations.slack.emulator.deskweb import DESK
from tests.harness import Gateway, cards, eventually, stored_card
from tests.test_commands_support import Slash, cmd_gw
from tests.test_desk import sender

__all__ = ["cmd_gw"]


def _transfer_options(card: dict[str, Any]) -> list[str]:
    for block in card.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == "sb_transfer":
                return [o["value"].split("|", 1)[1] for o in element["options"]]
    raise AssertionError("no Transfer menu on the card")


async def test_a_skill_added_from_slack_reaches_the_desk(cmd_gw: Gateway) -> None:
    gw = cmd_gw
    assert (await Slash(gw).text("skill add warranty warranty guarantee repair")).startswith("✅")
    await gw.post_message({"customer_id": "c-1", "message_id": "m1", "text": "I was charged twice on my invoice"})
    billing_card, _ = await stored_card(gw, "support-billing")
    assert "warranty" in _transfer_options(billing_card)

    await gw.post_message({"customer_id": "c-2", "message_id": "m1",
                           "text": "My warranty repair was refused, the guarantee should cover it"})
    card, conv_id = await stored_card(gw, "support-warranty")
    assert "billing" in _transfer_options(card)
    before = len(gw.slack.calls_to("views.open"))
    await sender(gw).click("U0ALICE", gw.slack.channel_id("support-warranty"), card,
                           {"type": "button", "action_id": "sb_resolve", "value": conv_id})
    (call,) = await eventually(lambda: gw.slack.calls_to("views.open")[before:])
    view = call.params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    skill = next(b for b in view["blocks"] if b.get("block_id") == "skill")["element"]
    assert skill["initial_option"]["value"] == "warranty"
    assert "warranty" in [o["value"] for o in skill["options"]]


async def test_a_command_typed_in_the_desk_page_names_members_as_slack_escapes_them(cmd_gw: Gateway) -> None:
    """The emulator passed `@bob` through raw, so `capacity @bob 2` was refused in its own desk page."""
    gw = cmd_gw
    desk = gw.app[gateway_app.EMULATOR][DESK]
    assert await desk.slash("/switchboard", "capacity @bob 2", user="U0CAROL", channel="support-leads") == 200
    policy = await eventually(lambda: _capacity(gw))
    assert policy == {"U0BOB": 2}


async def _capacity(gw: Gateway) -> dict[str, int]:
    return dict((await gw.rt.policies.current(force=True)).capacity)


async def test_a_canary_only_skill_is_offered_only_where_the_canary_routes(cmd_gw: Gateway) -> None:
    """Found in review: every card offered a skill added on a 50% canary, and picking it on a card of the live
    arm was refused each time ("Unknown skill"), since the move routes by the conversation's own arm."""
    gw = cmd_gw
    assert (await Slash(gw).text("skill add vip platinum concierge --canary 50%")).startswith("🐤")
    canary = await gw.rt.policies.canary(force=True)
    assert canary is not None
    for i in range(16):  # both arms get some: all in one would be a 1 in 32,768 chance
        await gw.post_message({"customer_id": f"c-{i}", "message_id": "m1", "text": "I was charged twice, invoice"})
    billing = await eventually(lambda: len(cards(gw.slack, "support-billing")) == 16 and cards(gw.slack,
                                                                                               "support-billing"))
    arms = await eventually(lambda: _all_armed(gw, canary.id, 16))
    by_arm: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for card in billing:
        conv_id = card["metadata"]["event_payload"]["conversation_id"]
        by_arm.setdefault(arms[conv_id], []).append((conv_id, card))
    assert set(by_arm) == {"control", "candidate"}, by_arm.keys()
    for arm, offered in (("control", False), ("candidate", True)):
        conv_id, card = by_arm[arm][0]
        assert ("vip" in _transfer_options(card)) is offered
        await eventually(partial(_card_saved, gw, conv_id))
        result = await gw.rt.ops.transfer(conv_id, "U0ALICE", "vip")
        assert result.ok is offered, result.message
        if not offered:
            assert "only on the canary policy" in result.message


async def _all_armed(gw: Gateway, canary_id: str, n: int) -> dict[str, str]:
    arms = await gw.rt.policies.arms(canary_id)
    return arms if len(arms) >= n else {}


async def _card_saved(gw: Gateway, conv_id: str) -> bool:
    conv = await gw.rt.store.load(conv_id)
    return bool(conv and conv.card_ts)


async def test_a_skill_the_canary_dropped_is_refused_in_words_that_fit(cmd_gw: Gateway) -> None:
    """A transfer to a live skill that the conversation's canary arm dropped was told "{skill} is only on the
    canary policy, which this conversation is not in": both halves false (diff review)."""
    gw = cmd_gw
    assert (await Slash(gw).text("skill remove account --canary 50%")).startswith("🐤")
    canary = await gw.rt.policies.canary(force=True)
    assert canary is not None
    for i in range(16):
        await gw.post_message({"customer_id": f"d-{i}", "message_id": "m1", "text": "I was charged twice, invoice"})
    arms = await eventually(lambda: _all_armed(gw, canary.id, 16))
    in_canary = next(c for c, arm in arms.items() if arm == "candidate")
    await eventually(partial(_card_saved, gw, in_canary))
    refused = await gw.rt.ops.transfer(in_canary, "U0ALICE", "account")
    assert not refused.ok and "is not on the canary policy this conversation follows" in refused.message
