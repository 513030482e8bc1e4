"""Changing the live policy safely: validated, atomic, versioned, audited, undoable.

Why optimistic versioning: two leads typing at once must never lose an update. A change is a function
of the policy it applies to (`Change.build`), so when another change lands first we simply re-read and
re-apply it on the newer policy (WATCH/MULTI retry). Only a previewed change ("apply" after a dry run)
insists on the exact base version it was shown against, and is reported stale otherwise.

Every change, undo and canary step is appended to `sb:policy:history` with who, when, what, and the
policies before and after, so undo is "apply the previous policy as a new version", itself audited.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError
from redis.exceptions import WatchError

from gateway import keys
from gateway.policy_store import CANARY, Canary, PolicyStore
from gateway.redis_conn import as_str
from router.policy import Policy, PolicyError

log = structlog.get_logger(__name__)

HISTORY = f"{keys.PREFIX}policy:history"
HISTORY_MAXLEN = 2000
PENDING_TTL_S = 15 * 60
MAX_RETRIES = 50


def pending_key(token: str) -> str:
    return f"{keys.PREFIX}policy:pending:{token}"


def pending_user_key(user: str) -> str:
    """The user's latest preview, so a typed `apply` finds it."""
    return f"{keys.PREFIX}policy:pending:user:{user}"


class ChangeError(ValueError):
    """A change that cannot apply; the message is the one line shown to the lead."""


@dataclass(frozen=True)
class Change:
    """What to do to a policy, as a function of the policy it lands on, plus a one-line summary."""

    summary: str
    build: Callable[[Policy], Policy]


@dataclass(frozen=True)
class Applied:
    before: Policy
    after: Policy
    entry_id: str
    summary: str


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


def validation_line(exc: ValidationError | ValueError) -> str:
    """Pydantic's first error as one readable line, naming the field and what is allowed."""
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    return str(exc)


def build_checked(change: Change, base: Policy) -> Policy:
    """Run the change and re-validate; the version is always base + 1, whatever the builder did."""
    try:
        new = change.build(base)
        data = new.model_dump(mode="json")
        data["version"] = base.version + 1
        return Policy.model_validate(data)
    except (ValidationError, PolicyError) as exc:
        raise ChangeError(validation_line(exc)) from None


def _rows(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as (id, text fields); redis-py types them loosely."""
    return [(as_str(i), {as_str(k): as_str(v) for k, v in (f or {}).items()}) for i, f in raw or []]


class PolicyAdmin:
    def __init__(self, redis: aioredis.Redis, policies: PolicyStore) -> None:
        self.redis = redis
        self.policies = policies

    # -- the atomic step ----------------------------------------------------------------------

    async def _commit(
        self, user: str, action: str, make: Callable[[Policy, Canary | None], tuple[Policy | None, str | None, str]],
        **detail: Any,
    ) -> Applied:
        """WATCH policy + canary, compute, MULTI (SET, history XADD), retry on a concurrent write.

        `make(live, canary)` returns (new live policy or None to keep it, new canary JSON / "" to
        delete / None to keep, summary); it may raise ChangeError to refuse.
        """
        for _ in range(MAX_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(keys.POLICY, CANARY)
                    raw, canary_raw = await pipe.mget(keys.POLICY, CANARY)
                    if raw is None:
                        raise ChangeError("no policy stored yet; start the gateway first")
                    live = Policy.from_json(raw)
                    canary = Canary.from_json(canary_raw) if canary_raw else None
                    new, canary_json, summary = make(live, canary)
                    after = new or live
                    entry = {
                        "action": action, "user": user, "at": f"{time.time():.3f}", "summary": summary,
                        "before_version": str(live.version), "after_version": str(after.version),
                        "before": live.to_json(), "after": after.to_json(),
                        "detail": json.dumps(detail, default=str),
                    }
                    pipe.multi()
                    if new is not None:
                        pipe.set(keys.POLICY, new.to_json())
                    if canary_json == "":
                        pipe.delete(CANARY)
                    elif canary_json is not None:
                        pipe.set(CANARY, canary_json)
                    pipe.xadd(HISTORY, entry, maxlen=HISTORY_MAXLEN, approximate=True)  # type: ignore[arg-type]
                    result = await pipe.execute()
                except WatchError:
                    continue
            await self.policies.current(force=True)
            log.info("policy_changed", action=action, user=user, summary=summary,
                     before_version=live.version, after_version=after.version)
            return Applied(live, after, as_str(result[-1]), summary)
        raise ChangeError("the policy is changing too fast right now; try again")

    # -- changes ------------------------------------------------------------------------------

    async def apply(self, change: Change, user: str) -> Applied:
        """Apply on whatever version is live now (re-applied on conflict, so nothing is lost)."""

        def make(live: Policy, canary: Canary | None) -> tuple[Policy, None, str]:
            return build_checked(change, live), None, change.summary

        return await self._commit(user, "change", make)

    async def apply_exact(self, proposed: Policy, base_version: int, user: str, summary: str,
                          action: str = "change", **detail: Any) -> Applied:
        """Apply a previewed policy only if the live version is still the one it was previewed on."""

        def make(live: Policy, canary: Canary | None) -> tuple[Policy, None, str]:
            if live.version != base_version:
                raise ChangeError(
                    f"stale preview: it was made against version {base_version}, the policy is now at "
                    f"version {live.version}. Run the command again to preview against the current policy."
                )
            return proposed, None, summary

        return await self._commit(user, action, make, **detail)

    async def undo_preview(self) -> tuple[str, Policy, str]:
        """(summary, policy an undo would restore, history entry it undoes), for `undo --dry-run`."""
        target = await self._undo_target()
        if target is None:
            raise ChangeError("nothing to undo: no policy change in the history")
        entry_id, fields = target
        live = await self.policies.current(force=True)
        data = Policy.from_json(fields["before"]).model_dump(mode="json")
        data["version"] = live.version + 1
        return f"undo: {fields['summary']}", Policy.model_validate(data), entry_id

    async def undo(self, user: str) -> Applied:
        """Re-apply the policy from before the newest change not yet undone, as a new version."""
        target = await self._undo_target()
        if target is None:
            raise ChangeError("nothing to undo: no policy change in the history")
        entry_id, fields = target
        before = Policy.from_json(fields["before"])

        left = Policy.from_json(fields["after"]).model_dump(exclude={"version"})

        def make(live: Policy, canary: Canary | None) -> tuple[Policy, None, str]:
            # Content, not version: after an undo the live policy is an older state under a new number.
            if live.model_dump(exclude={"version"}) != left:
                raise ChangeError(
                    f"cannot undo {fields['summary']!r}: the policy was changed since (outside the history); "
                    f"make the change you want explicitly"
                )
            data = before.model_dump(mode="json")
            data["version"] = live.version + 1
            return Policy.model_validate(data), None, f"undo: {fields['summary']}"

        return await self._commit(user, "undo", make, undoes=entry_id)

    async def _undo_target(self) -> tuple[str, dict[str, str]] | None:
        undone: set[str] = set()
        for entry_id, fields in _rows(await self.redis.xrevrange(HISTORY, count=HISTORY_MAXLEN)):
            if fields["action"] == "undo":
                undone.add(json.loads(fields.get("detail") or "{}").get("undoes", ""))
                continue
            if fields["before_version"] == fields["after_version"]:
                continue  # canary start/drop: the live policy did not change
            if entry_id not in undone:
                return entry_id, fields
        return None

    # -- canary -------------------------------------------------------------------------------

    async def start_canary(self, change: Change, share: float, user: str,
                           proposed: Policy | None = None, base_version: int | None = None) -> Applied:
        if not 0 < share < 100:
            raise ChangeError("canary share must be between 0% and 100% (exclusive), e.g. --canary 10%")

        def make(live: Policy, canary: Canary | None) -> tuple[None, str, str]:
            if canary is not None:
                raise ChangeError(f"a canary is already running ({canary.summary!r}, {canary.share:g}%); "
                                  "`canary promote` or `canary drop` it first")
            if base_version is not None and live.version != base_version:
                raise ChangeError(f"stale preview: the policy is now at version {live.version}, not "
                                  f"{base_version}. Run the command again.")
            candidate = proposed or build_checked(change, live)
            run = Canary(id=secrets.token_hex(6), share=share, policy=candidate, base_version=live.version,
                         user=user, summary=change.summary, started_at=time.time())
            return None, run.to_json(), f"canary {share:g}%: {change.summary}"

        return await self._commit(user, "canary_start", make, share=share)

    async def promote_canary(self, user: str) -> Applied:
        def make(live: Policy, canary: Canary | None) -> tuple[Policy, str, str]:
            if canary is None:
                raise ChangeError("no canary is running")
            if live.version != canary.base_version:
                raise ChangeError(f"the live policy changed (version {canary.base_version} → {live.version}) "
                                  "while the canary ran; `canary drop` it and start again")
            data = canary.policy.model_dump(mode="json")
            data["version"] = live.version + 1
            return Policy.model_validate(data), "", f"promote canary: {canary.summary}"

        return await self._commit(user, "canary_promote", make)

    async def drop_canary(self, user: str) -> Applied:
        def make(live: Policy, canary: Canary | None) -> tuple[None, str, str]:
            if canary is None:
                raise ChangeError("no canary is running")
            return None, "", f"drop canary: {canary.summary}"

        return await self._commit(user, "canary_drop", make)

    # -- previews waiting for "Apply" ---------------------------------------------------------

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

    async def pending(self, token: str | None = None, user: str | None = None) -> Pending | None:
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

    async def apply_pending(self, pending: Pending, user: str) -> Applied:
        """Commit a preview (once: the token is consumed only when the commit succeeds)."""
        if pending.action == "canary_promote":
            canary = await self.policies.canary(force=True)
            if canary is None or canary.policy != pending.proposed:
                raise ChangeError("stale preview: that canary is no longer running")
            applied = await self.promote_canary(user)
        elif pending.action == "undo":
            applied = await self.apply_exact(pending.proposed, pending.base_version, user, pending.summary,
                                             "undo", undoes=pending.undoes)
        elif pending.canary_share is not None:
            change = Change(pending.summary, lambda p: pending.proposed)
            applied = await self.start_canary(change, pending.canary_share, user, pending.proposed,
                                              pending.base_version)
        else:
            applied = await self.apply_exact(pending.proposed, pending.base_version, user, pending.summary)
        await self.redis.delete(pending_key(pending.token))
        return applied

    # -- reading ------------------------------------------------------------------------------

    async def history(self, count: int = 10) -> list[dict[str, str]]:
        """Newest first, without the bulky policy bodies."""
        out = []
        for entry_id, fields in _rows(await self.redis.xrevrange(HISTORY, count=count)):
            fields.pop("before", None)
            fields.pop("after", None)
            out.append({**fields, "id": entry_id})
        return out

    async def refused(self, user: str, command: str, reason: str) -> None:
        """A refused change is logged and kept on the desk audit stream, so leads can see attempts."""
        await self.audit("policy_refused", user, command=command[:300], reason=reason)
        log.warning("policy_change_refused", user=user, command=command[:300], reason=reason)

    async def audit(self, action: str, user: str, **detail: object) -> None:
        """One entry on the desk audit stream (`sb:audit`)."""
        entry = {"action": action, "user": user, **detail, "at": time.time()}
        await self.redis.xadd(keys.AUDIT, {"data": json.dumps(entry, default=str)}, maxlen=100_000, approximate=True)
