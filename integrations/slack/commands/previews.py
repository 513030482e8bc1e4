"""Previews waiting for "Apply": a dry run stashes what it showed, the Apply button (or a typed `apply`)
commits exactly that, once, and only if nobody changed the policy since.

Kept with the commands (not in `gateway.policy_admin`) because the token, the per-user "latest preview"
and the 15-minute window are the Slack conversation's, not the policy's.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway import keys
from gateway.policy_admin import Applied, Change, ChangeError, PolicyAdmin
from gateway.redis_conn import as_str
from router.policy import Policy

PENDING_TTL_S = 15 * 60


def pending_key(token: str) -> str:
    return f"{keys.PREFIX}policy:pending:{token}"


def pending_user_key(user: str) -> str:
    """The user's latest preview, so a typed `apply` finds it."""
    return f"{keys.PREFIX}policy:pending:user:{user}"


@dataclass(frozen=True)
class Pending:
    token: str
    user: str
    summary: str
    base_version: int
    proposed: Policy
    canary_share: float | None = None
    action: str = "change"
    """What applying does: "change" (set the policy), "undo" (audited as an undo), "canary_promote"."""
    undoes: str = ""


class Previews:
    def __init__(self, redis: aioredis.Redis, admin: PolicyAdmin) -> None:
        self.redis = redis
        self.admin = admin

    async def stash(self, user: str, summary: str, base_version: int, proposed: Policy,
                    canary_share: float | None = None, action: str = "change", undoes: str = "") -> Pending:
        token = secrets.token_urlsafe(12)
        data = {"user": user, "summary": summary, "base_version": base_version,
                "proposed": proposed.model_dump(mode="json"), "canary_share": canary_share,
                "action": action, "undoes": undoes}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(pending_key(token), json.dumps(data), ex=PENDING_TTL_S)
            pipe.set(pending_user_key(user), token, ex=PENDING_TTL_S)
            await pipe.execute()
        return Pending(token, user, summary, base_version, proposed, canary_share, action, undoes)

    async def get(self, token: str | None = None, user: str | None = None) -> Pending | None:
        if token is None and user is not None:
            raw_token = await self.redis.get(pending_user_key(user))
            token = as_str(raw_token) if raw_token else None
        if not token:
            return None
        raw = await self.redis.get(pending_key(token))
        if raw is None:
            return None
        data = json.loads(raw)
        share = data.get("canary_share")
        return Pending(token, data["user"], data["summary"], int(data["base_version"]),
                       Policy.model_validate(data["proposed"]), float(share) if share is not None else None,
                       str(data.get("action", "change")), str(data.get("undoes", "")))

    async def apply(self, pending: Pending, user: str) -> Applied:
        """Commit a preview (once: the token is consumed only when the commit succeeds)."""
        admin = self.admin
        if pending.action == "canary_promote":
            canary = await admin.policies.canary(force=True)
            if canary is None or canary.policy != pending.proposed:
                raise ChangeError("stale preview: that canary is no longer running")
            applied = await admin.promote_canary(user)
        elif pending.action == "undo":
            applied = await admin.apply_exact(pending.proposed, pending.base_version, user, pending.summary,
                                              "undo", undoes=pending.undoes)
        elif pending.canary_share is not None:
            change = Change(pending.summary, lambda p: pending.proposed)
            applied = await admin.start_canary(change, pending.canary_share, user, pending.proposed,
                                               pending.base_version)
        else:
            applied = await admin.apply_exact(pending.proposed, pending.base_version, user, pending.summary)
        await self.redis.delete(pending_key(pending.token))
        return applied
