"""Agent capacity: who may claim another conversation and who the card should suggest.

Pure functions over loads the worker reads from Redis, so the rules can be tested and benchmarked alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from router.policy import Policy


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """One agent as the worker sees them right now."""

    agent: str
    skills: frozenset[str] = field(default_factory=frozenset)
    open_claims: int = 0
    available: bool = True


def can_claim(agent: str, open_claims: int, policy: Policy) -> tuple[bool, str]:
    """Refusal text is shown to the agent in Slack, so it says the limit and what to do."""
    cap = policy.capacity_of(agent)
    if open_claims >= cap:
        return False, (
            f"<@{agent}> already has {open_claims} open conversation{'s' if open_claims != 1 else ''} "
            f"(limit {cap}); resolve or hand one over before claiming another"
        )
    return True, f"<@{agent}> can claim ({open_claims + 1}/{cap})"


def suggest_agent(
    skill: str, agents: Sequence[AgentLoad], policy: Policy, prefer: str | None = None
) -> str | None:
    """Least-loaded available agent with the skill and spare capacity; `prefer` (the customer's previous
    agent) wins whenever they qualify, because continuity beats balance for a returning customer.
    Ties break on relative load, then agent id, so every worker suggests the same person."""
    best: tuple[float, int, str] | None = None
    for a in agents:
        if not a.available or skill not in a.skills:
            continue
        cap = policy.capacity_of(a.agent)
        if a.open_claims >= cap:
            continue
        if prefer is not None and a.agent == prefer:
            return a.agent
        key = (a.open_claims / cap, a.open_claims, a.agent)
        if best is None or key < best:
            best = key
    return best[2] if best else None


def agent_available(agent: str, agents: Sequence[AgentLoad], policy: Policy) -> bool:
    return any(a.agent == agent and a.available and a.open_claims < policy.capacity_of(a.agent) for a in agents)
