"""SIGKILL of workers (frozen mid-batch and at a random moment) and of the web process under load."""

from __future__ import annotations

import asyncio
import random

from tests.faults import ledger
from tests.faults.cluster import Cluster, audit
from tests.faults.load import run_load


async def wait_for_log(proc_log: object, needle: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    from tests.faults.cluster import Proc

    assert isinstance(proc_log, Proc)
    for _ in range(int(timeout / 0.05)):
        if needle in proc_log.log_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{proc_log.name}: {needle!r} never logged")


async def test_workers_sigkilled_mid_batch_and_at_random(cluster: Cluster) -> None:
    await cluster.start_web()
    frozen = cluster.start_worker("w-frozen", SWITCHBOARD_FAULT_HANG="after_card_post")
    await wait_for_log(frozen, "partitions_acquired")  # it must own partitions before the other joins
    steady = cluster.start_worker("w-steady")
    killed_at: list[int] = []
    rng = random.Random(8)
    kill_after = rng.randint(40, 80)

    async def chaos(accepted: int) -> None:
        # A random moment of the load, once the steady worker is really working (not still importing).
        if accepted >= kill_after and not killed_at and "partitions_acquired" in steady.log_text():
            killed_at.append(accepted)
            steady.kill()  # a random moment of the load: whatever it had in flight is abandoned
            cluster.start_worker("w-replacement-2")

    load = asyncio.create_task(run_load(cluster, customers=30, per_customer=3, tag="wk", on_accepted=chaos))
    await wait_for_log(frozen, "fault_hang")
    assert await cluster.pending_total() > 0
    frozen.kill()  # frozen between posting a card and acknowledging it, batch half done
    cluster.start_worker("w-replacement-1")
    result = await load
    if not killed_at:
        await wait_for_log(steady, "partitions_acquired")
        killed_at.append(-1)
        steady.kill()
        cluster.start_worker("w-replacement-2")
    await cluster.drained(timeout=90)
    found = await audit(cluster, result.accepted)
    ledger.record("worker SIGKILL (checkpoint + random)", found.messages, len(found.lost), len(found.duplicated))
    assert found.lost == [] and found.duplicated == []
    assert killed_at, "the random kill never happened"


async def test_web_sigkilled_with_requests_in_flight(cluster: Cluster) -> None:
    web = await cluster.start_web()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    restarted: list[bool] = []

    async def chaos(accepted: int) -> None:
        if accepted >= 45 and not restarted:
            restarted.append(True)
            web.kill()
            await cluster.start_web("web-2")

    result = await run_load(cluster, customers=30, per_customer=3, tag="web", on_accepted=chaos)
    await cluster.drained(timeout=60)
    found = await audit(cluster, result.accepted)
    retried = result.attempts - len(result.accepted)
    ledger.record("web SIGKILL with requests in flight", found.messages, len(found.lost), len(found.duplicated),
                  f"{retried} client retries, {result.duplicates_flagged} answered duplicate")
    assert restarted and retried > 0, "the kill must have interrupted requests"
    assert found.lost == [] and found.duplicated == []
