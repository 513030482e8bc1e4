"""Agent loads come from one script over the known-agents set (it runs for every routed message)."""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway import keys
from gateway.agents import agent_loads, remember_agent
from router.policy import load_policy


async def test_loads_count_open_claims_per_known_agent(redis: aioredis.Redis) -> None:
    policy = load_policy()
    assert await agent_loads(redis, policy) == []
    for agent in ("U0BOB", "U0ALICE"):
        await remember_agent(redis, agent)
    await redis.sadd(keys.agent_open("U0ALICE"), "conv_1", "conv_2")
    await redis.sadd(keys.agent_open("U0CAROL"), "conv_3")  # not a known agent: not listed
    loads = await agent_loads(redis, policy)
    assert [(a.agent, a.open_claims) for a in loads] == [("U0ALICE", 2), ("U0BOB", 0)]
    assert all(a.skills == frozenset(policy.skills) for a in loads)
