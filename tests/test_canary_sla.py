"""A conversation in a canary's share keeps its arm's business hours for its SLA ladder.

Routing took the canary's hours (after hours or not) while the ladder counted the live policy's, so an
`hours` canary was only half applied: the card said "after hours" and the leads were pinged at 2 a.m.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial

from gateway.policy_store import CANDIDATE
from tests.harness import Gateway, eventually
from tests.test_commands_support import Slash, cmd_gw

__all__ = ["cmd_gw"]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def test_the_ladder_counts_the_arm_s_business_hours(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text("hours billing Mon-Sun 00:00-23:59 UTC")).startswith("✅")  # live: always open
    closed_day = DAYS[(datetime.now(UTC).weekday() + 3) % 7]  # the canary's desk is closed today and tomorrow
    started = await slash.text(f"hours billing {closed_day} 09:00-10:00 UTC --canary 99%")
    assert started.startswith("🐤 Canary started"), started
    canary = await cmd_gw.rt.policies.canary(force=True)
    assert canary is not None
    for i in range(5):  # one in a hundred lands in the control arm: take the next customer then
        status, body = await cmd_gw.post_message({"customer_id": f"c-{i}", "message_id": f"m-{i}",
                                                  "text": "I was charged twice on my invoice, I want a human"})
        assert status == 202
        conv_id = body["conversation_id"]
        pending = await eventually(partial(cmd_gw.rt.sla.scheduler.pending, conv_id))
        if (await cmd_gw.rt.policies.arms(canary.id))[conv_id] == CANDIDATE:
            break
    # Live hours would put the first step minutes away; the arm's desk opens two days or more from now.
    assert min(d.due for d in pending) > time.time() + 36 * 3600, [d.due - time.time() for d in pending]
