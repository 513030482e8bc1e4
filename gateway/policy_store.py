"""The live policy, shared through Redis so every process sees a change within a second.

A canary is a second, candidate policy plus the share of new conversations it routes. The arm is a
pure function of the conversation id (crc32), so every worker, every retry and every replay puts one
conversation in the same arm without coordination; the arm is also recorded (first write wins) so
`stats` can compare the two groups after the fact.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
import structlog

from gateway import keys
from gateway.redis_conn import as_str
from router.policy import Policy

log = structlog.get_logger(__name__)

CANARY = f"{keys.PREFIX}policy:canary"
"""JSON: {"id", "share", "policy", "base_version", "user", "summary", "started_at"}."""
BUCKETS = 10_000
"""Shares are resolved to 0.01 %: crc32 % 10 000 < share × 100."""
ARMS_TTL_S = 90 * 86400

CONTROL = "control"
CANDIDATE = "candidate"
_ABSENT = object()


class CanaryConflict(ValueError):
    """A live change touches a field the running canary changed itself; the message names the field."""


def arms_key(canary_id: str) -> str:
    """conversation id -> arm, for one canary run (a new run never mixes with an old one)."""
    return f"{keys.PREFIX}policy:canary:{canary_id}:arms"


def bucket_of(conversation_id: str) -> int:
    """Stable across processes and restarts (unlike `hash()`)."""
    return zlib.crc32(conversation_id.encode()) % BUCKETS


def arm_of(conversation_id: str, share_pct: float) -> str:
    return CANDIDATE if bucket_of(conversation_id) < round(share_pct * BUCKETS / 100) else CONTROL


@dataclass(frozen=True)
class Canary:
    """A candidate policy routing `share` percent of new conversations."""

    id: str
    share: float
    policy: Policy
    base_version: int
    user: str
    summary: str
    started_at: float

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "share": self.share, "policy": self.policy.model_dump(mode="json"),
             "base_version": self.base_version, "user": self.user, "summary": self.summary,
             "started_at": self.started_at}
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Canary:
        data: dict[str, Any] = json.loads(raw)
        return cls(id=str(data["id"]), share=float(data["share"]), policy=Policy.model_validate(data["policy"]),
                   base_version=int(data["base_version"]), user=str(data.get("user", "")),
                   summary=str(data.get("summary", "")), started_at=float(data.get("started_at", 0.0)))

    def following(self, candidate: Policy, live: Policy) -> Canary:
        """The same run (id, share, arms) on a candidate that took the live change too, so it still
        differs from the live policy by its own change only and `canary promote` stays possible."""
        data = candidate.model_dump(mode="json")
        data["version"] = live.version + 1
        return replace(self, policy=Policy.model_validate(data), base_version=live.version)


def carry(candidate: Policy, before: Policy, after: Policy) -> Policy:
    """`candidate` with the whole-policy change before → after applied field by field (a three-way merge).

    Used when only the resulting policy is known (an applied preview, an undo), not the typed change.
    Lists (keywords) count as one field: merging them item by item could invent a policy nobody asked for.
    Raises CanaryConflict when the canary changed a field that the live change sets differently.
    """
    b, a, c = (p.model_dump(mode="json", exclude={"version"}) for p in (before, after, candidate))
    merged = _merge(b, a, c, "")
    merged["version"] = candidate.version
    return Policy.model_validate(merged)


def _merge(base: Any, target: Any, other: Any, path: str) -> Any:
    if base == target:
        return other
    if all(isinstance(x, dict) for x in (base, target, other)):
        out = dict(other)
        for key in base.keys() | target.keys():
            value = _merge(base.get(key, _ABSENT), target.get(key, _ABSENT), other.get(key, _ABSENT),
                           f"{path}.{key}" if path else str(key))
            if value is _ABSENT:
                out.pop(key, None)
            else:
                out[key] = value
        return out
    if other == base:
        return target
    if other == target:
        return other
    raise CanaryConflict(path or "the policy")


class PolicyStore:
    def __init__(self, redis: aioredis.Redis, max_age_s: float = 1.0) -> None:
        self.redis = redis
        self.max_age_s = max_age_s
        self._cached: Policy | None = None
        self._raw: bytes | str = b""
        self._canary: Canary | None = None
        self._canary_raw: bytes | str | None = None
        self._checked = 0.0

    async def bootstrap(self, policy: Policy) -> Policy:
        """Store the file's policy unless Redis already holds one (changes made from Slack win)."""
        if await self.redis.set(keys.POLICY, policy.to_json(), nx=True):
            log.info("policy_stored", version=policy.version, source="file")
        return await self.current(force=True)

    async def _refresh(self, force: bool) -> None:
        """One MGET per second at most: the live policy and the canary are read together."""
        now = time.monotonic()
        if self._cached is not None and not force and now - self._checked < self.max_age_s:
            return
        raw, canary_raw = await self.redis.mget(keys.POLICY, CANARY)
        if raw is None:
            raw, canary_raw = await self._restore()
        if self._cached is None or raw != self._raw:
            self._cached = Policy.from_json(raw)
            self._raw = raw
        if canary_raw != self._canary_raw:
            self._canary = Canary.from_json(canary_raw) if canary_raw else None
            self._canary_raw = canary_raw
        self._checked = now

    async def _restore(self) -> tuple[bytes | str, bytes | str | None]:
        """Put back the policy (and canary) this process last read, when the key is gone.

        Only a Redis that came back empty (restarted without persistence, or flushed) loses the key:
        nothing deletes it. Routing on without a policy failed every message, and falling back to the
        file would quietly undo every change made from Slack since; the copy held here is at most a
        second old. SET NX, so the first process to notice wins and the others read what it stored."""
        if self._cached is None:
            raise RuntimeError("no policy in Redis; the web or serve process stores it at start")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.POLICY, self._raw, nx=True)
            if self._canary_raw:
                pipe.set(CANARY, self._canary_raw, nx=True)
            pipe.mget(keys.POLICY, CANARY)
            *stored, (raw, canary_raw) = await pipe.execute()
        if stored[0]:
            log.error("policy_restored", version=self._cached.version, canary=self._canary.id if self._canary else None,
                      detail="the live policy was missing from Redis (restarted without persistence or flushed); "
                             "stored again the copy this process held")
        return raw, canary_raw

    async def current(self, force: bool = False) -> Policy:
        await self._refresh(force)
        assert self._cached is not None
        return self._cached

    async def skills(self, conversation_id: str | None = None) -> tuple[str, ...]:
        """What an agent may pick on a Resolve form: the live policy's skills, and a running canary's (a skill
        added on a canary routes its share there). Fixed at start, as they were, a skill a lead added from Slack
        was missing, and the Resolve form taught the learners the first one.

        With a conversation (its card's Transfer menu): the skills of the arm that routed it. A transfer lands
        where that arm routes, so a canary-only skill offered to a live-arm card was refused on every click."""
        if conversation_id is not None:
            return tuple((await self.routed_under(conversation_id)).skills)
        policy, canary = await self.current(), self._canary
        extra = [s for s in canary.policy.skills if s not in policy.skills] if canary is not None else []
        return (*policy.skills, *extra)

    async def canary(self, force: bool = False) -> Canary | None:
        await self._refresh(force)
        return self._canary

    async def for_conversation(self, conversation_id: str) -> Policy:
        """The policy that routes a *new* conversation, which a running canary puts in one of its arms here; every
        later look is `routed_under`. Called for any conversation, one from before the canary joined an arm at
        its next message and switched policy mid-conversation (a paused bot handing it to people), and the
        arms' stats counted conversations the live policy had routed."""
        policy = await self.current()
        canary = self._canary
        if canary is None:
            return policy
        arm = arm_of(conversation_id, canary.share)
        key = arms_key(canary.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(key, conversation_id, arm)
            pipe.expire(key, ARMS_TTL_S)
            await pipe.execute()
        log.debug("policy_arm", conversation_id=conversation_id, arm=arm, canary=canary.id)
        return canary.policy if arm == CANDIDATE else policy

    async def routed_under(self, conversation_id: str) -> Policy:
        """The policy of the arm that routed this conversation, read only: the live one unless the running
        canary recorded it in its share. A conversation from before the canary is not put in an arm."""
        policy = await self.current()
        canary = self._canary
        if canary is None:
            return policy
        arm = await self.redis.hget(arms_key(canary.id), conversation_id)
        return canary.policy if arm is not None and as_str(arm) == CANDIDATE else policy

    async def arms(self, canary_id: str) -> dict[str, str]:
        """conversation id -> arm for one canary run."""
        raw = await self.redis.hgetall(arms_key(canary_id))
        return {as_str(k): as_str(v) for k, v in raw.items()}
