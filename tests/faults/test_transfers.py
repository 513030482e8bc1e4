"""Agents transferring conversations while a worker is SIGKILLed and Slack fails: every move lands once.

The transfer's new card is posted by the worker from the customer's partition stream, so this is the
exactly-once path of a routed card again, with the old card to retire and the customer still writing.
"""

from __future__ import annotations

import asyncio
import random

from gateway.desk_ops import DeskOps
from gateway.policy_store import PolicyStore
from gateway.store import ConversationStore
from tests.faults import ledger
from tests.faults.cluster import PARTITIONS, Cluster, audit
from tests.faults.load import run_load
from tests.faults.test_process_kills import wait_for_log

CUSTOMERS = 12


async def test_transfers_with_a_worker_killed_and_slack_failing(cluster: Cluster) -> None:
    await cluster.start_web()
    cluster.start_worker("w1")
    doomed = cluster.start_worker("w2")
    opened = await run_load(cluster, customers=CUSTOMERS, per_customer=1, tag="xf")
    await cluster.drained(timeout=90)
    await wait_for_log(doomed, "partitions_acquired")
    store = ConversationStore(cluster.redis, PARTITIONS)
    ops = DeskOps(cluster.redis, store, PolicyStore(cluster.redis))
    movers = sorted(set(opened.accepted.values()))[::2]
    rng = random.Random(12)
    kill_at = rng.randrange(1, len(movers))
    cluster.state.fail_next("chat.postMessage", 500, count=3)

    async def transfer_all() -> None:
        for i, conv_id in enumerate(movers):
            skill = ("technical", "shipping")[i % 2]
            assert (await ops.transfer(conv_id, "U0AGENT", skill)).ok
            if i == kill_at:
                doomed.kill()  # whatever it had in flight (a move half done, say) is abandoned
                cluster.start_worker("w3")
            await asyncio.sleep(rng.uniform(0.0, 0.1))

    # The customers keep writing while their conversations move (their first message is re-sent too:
    # an API retry, answered as a duplicate).
    follow_ups = asyncio.create_task(run_load(cluster, customers=CUSTOMERS, per_customer=3, tag="xf", pause=0.05))
    await transfer_all()
    result = await follow_ups
    await cluster.drained(timeout=120)
    found = await audit(cluster, result.accepted, moved=True)
    ledger.record("transfers, worker SIGKILL + Slack 500s", found.messages, len(found.lost), len(found.duplicated),
                  f"{len(movers)} conversations moved")
    assert found.lost == [] and found.duplicated == []
    for conv_id in movers:
        conv = await store.load(conv_id)
        assert conv is not None and conv.decision is not None and conv.decision.skill == conv.skill
        assert conv.decision.channel == f"support-{conv.skill}"
