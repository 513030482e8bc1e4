"""A skill a lead adds from Slack is on every card's Transfer menu and preselected on its Resolve form.

Found in review: the desk's skill list was fixed at start, so after `/switchboard skill add warranty …` the
warranty card offered no way back to warranty, and its Resolve form preselected `billing`: an agent who
submitted it untouched taught the skill learner the wrong label.
"""

from __future__ import annotations

import json
from typing import Any

import gateway.app as gateway_app
from integrations.slack.emulator.deskweb import DESK
from tests.harness import Gateway, eventually, stored_card
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
