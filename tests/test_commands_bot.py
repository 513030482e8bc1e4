"""The built-in answer bot hands off by the live policy: a lead's change reaches it like it reaches the
router (it used to copy the hand-off rules once, at start-up)."""

from __future__ import annotations

from gateway.domain import Conversation
from tests.harness import Gateway, eventually
from tests.test_commands_support import Slash, cmd_gw

__all__ = ["cmd_gw"]


async def test_removed_escalation_keyword_no_longer_hands_off(cmd_gw: Gateway) -> None:
    assert (await Slash(cmd_gw).text('keyword remove "sue" escalate')).startswith("✅")
    status, body = await cmd_gw.post_message({"customer_id": "cust-sue", "message_id": "m1",
                                              "text": "How long does shipping take to my sister Sue in Leeds?"})
    assert status == 202
    conv_id = str(body["conversation_id"])

    async def routed() -> Conversation | None:
        conv = await cmd_gw.rt.store.load(conv_id)
        return conv if conv is not None and conv.decision is not None and conv.state.value != "new" else None

    conv = await eventually(routed)
    assert conv.decision is not None
    assert not any("'sue'" in reason for reason in conv.decision.reasons), conv.decision.reasons
