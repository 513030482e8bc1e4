"""SLA deadlines under clock jumps: a day forward at once, then backwards, then forward again.

A jump must not fire one step twice, skip the conversation's card, or loop; going back in time (NTP
correction) must fire nothing.
"""

from __future__ import annotations

from collections import Counter

from tests.faults import ledger
from tests.harness import Gateway, cards, eventually, sla_on_manual_clock


async def test_sla_steps_fire_once_across_clock_jumps(gateway: Gateway) -> None:
    clock = await sla_on_manual_clock(gateway)
    convs = []
    for i in range(5):
        status, body = await gateway.post_message(
            {"customer_id": f"clk-{i}", "message_id": f"m-{i}", "text": "my invoice is wrong"})
        assert status == 202
        convs.append(body["conversation_id"])
    await eventually(lambda: len(cards(gateway.slack, "support-billing")) == 5)

    async def planned() -> bool:
        return all([await gateway.rt.sla.scheduler.pending(c) for c in convs])

    await eventually(planned)
    clock.advance(86_400)  # the host slept for a day
    fired = [await gateway.rt.sla.tick() for _ in range(6)]
    assert fired[-1] == 0, f"ticks never settle: {fired}"
    after_jump = {c: [h["step"] for h in await gateway.rt.sla.scheduler.escalations(c)] for c in convs}
    clock.advance(-2 * 86_400)  # NTP drags the clock two days back
    assert await gateway.rt.sla.tick() == 0
    clock.advance(86_400 + 5)
    assert await gateway.rt.sla.tick() == 0
    history = {c: [h["step"] for h in await gateway.rt.sla.scheduler.escalations(c)] for c in convs}
    repeated = sum(n - 1 for steps in history.values() for n in Counter(steps).values() if n > 1)
    missing = 0
    for c in convs:
        conv = await gateway.rt.store.load(c)
        missing += conv is None or conv.card_ts is None
    ledger.record("SLA clock jump +1 d, -2 d, +1 d", len(convs), missing, repeated,
                  f"{sum(fired)} SLA steps fired")
    assert history == after_jump, "going back in time fired something again"
    assert repeated == 0 and missing == 0
    assert all(steps for steps in history.values()), "a day late and nothing escalated"
    leads = cards(gateway.slack, "support-leads")
    assert len({c["metadata"]["event_payload"]["conversation_id"] for c in leads}) == len(leads)
