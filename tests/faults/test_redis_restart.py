"""Redis SIGKILLed and restarted (AOF, fsync always) in the middle of a load run."""

from __future__ import annotations

import asyncio

from tests.faults import ledger
from tests.faults.cluster import Cluster, audit
from tests.faults.load import run_load


async def test_redis_restart_during_load_loses_nothing_acknowledged(cluster: Cluster) -> None:
    await cluster.start_web()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    outage: dict[str, int] = {}

    async def chaos(accepted: int) -> None:
        if accepted >= 40 and not outage:
            outage["at"] = accepted
            cluster.redis_server.kill()
            status, _ = await cluster.post("probe", "probe-1", "are you there?")
            outage["status"] = status
            async with cluster.session.get(f"{cluster.url}/readyz") as resp:
                outage["ready"] = resp.status
            await asyncio.sleep(1.0)
            cluster.redis_server.start()

    result = await run_load(cluster, customers=30, per_customer=3, tag="rr", on_accepted=chaos, pause=0.02)
    probe, _ = await cluster.post_until_accepted("probe", "probe-1", "are you there?")
    result.accepted["probe-1"] = probe["conversation_id"]
    await cluster.drained(timeout=60)
    found = await audit(cluster, result.accepted)
    ledger.record("Redis SIGKILL + restart (AOF) under load", found.messages, len(found.lost),
                  len(found.duplicated), f"{result.attempts - len(result.accepted)} retries after 503/errors")
    assert outage.get("status") == 503 and outage.get("ready") == 503
    assert found.lost == [] and found.duplicated == []
    async with cluster.session.get(f"{cluster.url}/readyz") as resp:
        assert resp.status == 200  # recovered by itself, no restart of web or workers


