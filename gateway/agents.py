"""Who is working right now: agents and their open claims, read from the claim sets in Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as RedisPipeline

from gateway import keys
from gateway.redis_conn import as_str
from router.capacity import AgentLoad
from router.policy import Policy

KNOWN = f"{keys.PREFIX}agents:known"

RELEASE_CLAIM = """
-- Drop a claim only if KEYS[1] is still held by ARGV[1], and free that agent's capacity (KEYS[2]).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


_LOADS = """
local out = {}
for _, agent in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  table.insert(out, agent)
  table.insert(out, redis.call('SCARD', ARGV[1] .. agent .. ARGV[2]))
end
return out
"""


async def agent_loads(redis: aioredis.Redis, policy: Policy) -> list[AgentLoad]:
    """Every agent with a claim set and how many conversations they hold now (for suggestions, SLAs)."""
    async with redis.pipeline(transaction=False) as pipe:
        parse = stage_agent_loads(pipe)
        return loads_for(parse(await pipe.execute()), policy)


def stage_agent_loads(pipe: RedisPipeline) -> Callable[[list[Any]], list[tuple[str, int]]]:
    """Queued on a caller's pipeline: the known-agents set, not a SCAN, and one script, not a read
    per agent, because this runs for every routed conversation."""
    at = len(pipe)
    prefix, suffix = keys.agent_open("\0").split("\0")
    pipe.eval(_LOADS, 1, KNOWN, prefix, suffix)

    def parse(results: list[Any]) -> list[tuple[str, int]]:
        raw = results[at]
        return sorted((as_str(agent), int(n)) for agent, n in zip(raw[::2], raw[1::2], strict=True))

    return parse


def loads_for(loads: list[tuple[str, int]], policy: Policy) -> list[AgentLoad]:
    # Availability is "under capacity": Slack presence is not consulted (it is often wrong for agents).
    return [AgentLoad(a, frozenset(policy.skills), n) for a, n in loads]


async def remember_agent(redis: aioredis.Redis, user: str) -> None:
    await redis.sadd(KNOWN, user)
