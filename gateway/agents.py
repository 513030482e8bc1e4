"""Who is working right now: agents and their open claims, read from the claim sets in Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway import keys
from router.capacity import AgentLoad
from router.policy import Policy

KNOWN = f"{keys.PREFIX}agents:known"


async def agent_loads(redis: aioredis.Redis, policy: Policy) -> list[AgentLoad]:
    """Every agent with a claim set and how many conversations they hold now (for suggestions, SLAs)."""
    # The known-agents set, not a SCAN: this runs for every routed conversation.
    agents = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in await redis.smembers(KNOWN))
    if not agents:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for agent in agents:
            pipe.scard(keys.agent_open(agent))
        counts = await pipe.execute()
    # Availability is "under capacity": Slack presence is not consulted (it is often wrong for agents).
    return [AgentLoad(a, frozenset(policy.skills), int(n)) for a, n in zip(agents, counts, strict=True)]


async def remember_agent(redis: aioredis.Redis, user: str) -> None:
    await redis.sadd(KNOWN, user)
