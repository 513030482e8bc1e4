"""Changing the live policy safely: validated, atomic, versioned, audited, undoable.

Why optimistic versioning: two leads typing at once must never lose an update. A change is a function
of the policy it applies to (`Change.build`), so when another change lands first we simply re-read and
re-apply it on the newer policy (WATCH/MULTI retry). Only a previewed change ("apply" after a dry run)
insists on the exact base version it was shown against, and is reported stale otherwise.

Every change, undo and canary step is appended to `sb:policy:history` with who, when, what, and the
policies before and after, so undo is "apply the previous policy as a new version", itself audited.
A change that would change nothing is refused, so the history (and undo) only holds real changes.

Undo takes back the caller's own newest change; someone else's only by its id (`undo <id>`), so two
leads never undo each other's work by accident. The target is chosen under the same WATCH as the commit,
so a change landing in between is seen, not misreported.

A running canary follows every live change (its candidate takes it too, in the same transaction), so it
keeps differing from the live policy by its own change only and can still be promoted: a typed change is
re-run on the candidate; a whole-policy change (an applied preview, an undo) is merged into it field by
field. Either is refused when it would overwrite a field the canary changed itself (`canary promote` or
`drop` first): re-run blindly, it left both arms the same policy, stats compared identical arms and a
promote "succeeded" without changing anything. For the same reason a canary the live policy has caught
up with is not promoted.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError
from redis.exceptions import WatchError

from gateway import keys
from gateway.policy_canary import overwritten
from gateway.policy_store import CANARY, Canary, CanaryConflict, PolicyStore, carry
from gateway.redis_conn import as_str, stream_rows
from router.policy import Policy, PolicyError

log = structlog.get_logger(__name__)

HISTORY = f"{keys.PREFIX}policy:history"
HISTORY_MAXLEN = 2000
HISTORY_PAGE = 100
MAX_RETRIES = 50


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
    canary_followed: bool = False
    """The running canary's candidate took the change too."""


@dataclass(frozen=True)
class Entry:
    """A history entry an undo may take back."""

    id: str
    user: str
    summary: str
    before: Policy
    after: Policy

    def describe(self) -> str:
        return f"<@{self.user}>'s “{self.summary}” (`{self.id}`, v{self.before.version} → v{self.after.version})"


@dataclass(frozen=True)
class State:
    """What a commit decides on, all read under WATCH."""

    live: Policy
    canary: Canary | None
    undo_target: Entry | None = None


@dataclass(frozen=True)
class Outcome:
    """What a commit writes: the new live policy (None keeps it), the canary (JSON; "" deletes it, None
    keeps it), the history summary and any detail only known once the state was read."""

    summary: str
    live: Policy | None = None
    canary: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


Make = Callable[[State], Outcome]


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


def unchanged(a: Policy, b: Policy) -> bool:
    """Same content: the version number alone does not make a change."""
    return a.model_dump(exclude={"version"}) == b.model_dump(exclude={"version"})


def refuse_noop(live: Policy, new: Policy, summary: str) -> None:
    """A no-op would be recorded, and an undo of it would "succeed" and do nothing."""
    if unchanged(live, new):
        raise ChangeError(f"nothing to change: the policy already has {summary} (v{live.version})")


def _noop_entry(fields: dict[str, str]) -> bool:
    """Recorded before no-ops were refused, or a promote of a canary the live policy had caught up with."""
    before, after = json.loads(fields["before"]), json.loads(fields["after"])
    before.pop("version", None)
    after.pop("version", None)
    return bool(before == after)


async def newest_undoable(reader: Any) -> Entry | None:
    """The newest change not undone yet; undos, canary start/drop and no-op entries are skipped.

    `reader` is the client or a WATCHing pipeline (immediate mode). Pages back through the history
    rather than loading all of it (each entry holds two whole policies)."""
    undone: set[str] = set()
    end, read = "+", 0
    while read < HISTORY_MAXLEN:
        rows = stream_rows(await reader.xrevrange(HISTORY, max=end, count=HISTORY_PAGE + 1))
        rows = [r for r in rows if r[0] != end]  # `max` is inclusive
        if not rows:
            return None
        for entry_id, fields in rows:
            if fields["action"] == "undo":
                undone.add(json.loads(fields.get("detail") or "{}").get("undoes", ""))
            elif not (fields["before_version"] == fields["after_version"] or entry_id in undone
                      or _noop_entry(fields)):
                return Entry(entry_id, fields.get("user", "?"), fields.get("summary", ""),
                             Policy.from_json(fields["before"]), Policy.from_json(fields["after"]))
        end, read = rows[-1][0], read + len(rows)
    return None


def pick_undo(target: Entry | None, user: str, entry_id: str | None) -> Entry:
    """The caller's own newest change, or the newest change named by its id (then it may be anyone's)."""
    if target is None:
        raise ChangeError("nothing to undo: no policy change in the history")
    if entry_id is not None and target.id != entry_id:
        raise ChangeError(f"cannot undo `{entry_id}`: only the newest change can be undone, and that is "
                          f"{target.describe()}")
    if entry_id is None and target.user != user:
        raise ChangeError(f"the newest change is {target.describe()}, not yours; to undo it anyway: "
                          f"`undo {target.id}` (add --dry-run to preview it)")
    return target


def _restore(target: Entry, live: Policy) -> Policy:
    data = target.before.model_dump(mode="json")
    data["version"] = live.version + 1
    return Policy.model_validate(data)


def _conflict(canary: Canary, field_path: str) -> ChangeError:
    return ChangeError(f"a canary is running (“{canary.summary}”) and this sets {field_path}, which the canary "
                       "changes too; `canary promote` or `canary drop` it first")


def _cannot_take(canary: Canary, why: str) -> ChangeError:
    return ChangeError(f"the running canary (“{canary.summary}”) cannot take this change ({why}); "
                       "`canary promote` or `canary drop` it first")


def _carried(canary: Canary | None, live: Policy, new: Policy) -> str | None:
    """The running canary moved onto `new`, for a whole-policy change (merged field by field)."""
    if canary is None:
        return None
    try:
        return canary.following(carry(canary.policy, live, new), new).to_json()
    except CanaryConflict as exc:
        raise _conflict(canary, str(exc)) from None
    except (ValidationError, PolicyError) as exc:
        raise _cannot_take(canary, validation_line(exc)) from None


def _followed(canary: Canary, change: Change, live: Policy, new: Policy) -> str:
    """The running canary with a typed change re-run on it; refused where that would replace a value the
    canary set itself by the live one (its own change silently gone, both arms alike)."""
    try:
        candidate = build_checked(change, canary.policy)
    except ChangeError as exc:
        raise _cannot_take(canary, str(exc)) from None
    lost = overwritten(live, new, canary.policy, candidate)
    if lost is not None:
        raise _conflict(canary, lost)
    return canary.following(candidate, new).to_json()


class PolicyAdmin:
    def __init__(self, redis: aioredis.Redis, policies: PolicyStore) -> None:
        self.redis = redis
        self.policies = policies

    # -- the atomic step ----------------------------------------------------------------------

    async def _commit(self, user: str, action: str, make: Make, *, undo: bool = False, **detail: Any) -> Applied:
        """WATCH policy + canary (+ the history, for an undo), compute, MULTI (SET, history XADD), retry
        on a concurrent write. `make` may raise ChangeError to refuse."""
        for _ in range(MAX_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(keys.POLICY, CANARY, *((HISTORY,) if undo else ()))
                    raw, canary_raw = await pipe.mget(keys.POLICY, CANARY)
                    if raw is None:
                        raise ChangeError("no policy stored yet; start the gateway first")
                    live = Policy.from_json(raw)
                    canary = Canary.from_json(canary_raw) if canary_raw else None
                    out = make(State(live, canary, await newest_undoable(pipe) if undo else None))
                    after = out.live or live
                    entry = {
                        "action": action, "user": user, "at": f"{time.time():.3f}", "summary": out.summary,
                        "before_version": str(live.version), "after_version": str(after.version),
                        "before": live.to_json(), "after": after.to_json(),
                        "detail": json.dumps({**detail, **out.detail}, default=str),
                    }
                    pipe.multi()
                    if out.live is not None:
                        pipe.set(keys.POLICY, out.live.to_json())
                    if out.canary == "":
                        pipe.delete(CANARY)
                    elif out.canary is not None:
                        pipe.set(CANARY, out.canary)
                    pipe.xadd(HISTORY, entry, maxlen=HISTORY_MAXLEN, approximate=True)  # type: ignore[arg-type]
                    result = await pipe.execute()
                except WatchError:
                    continue
            await self.policies.current(force=True)
            followed = canary is not None and out.live is not None and bool(out.canary)
            log.info("policy_changed", action=action, user=user, summary=out.summary,
                     before_version=live.version, after_version=after.version, canary_followed=followed)
            return Applied(live, after, as_str(result[-1]), out.summary, followed)
        raise ChangeError("the policy is changing too fast right now; try again")

    # -- changes ------------------------------------------------------------------------------

    async def apply(self, change: Change, user: str) -> Applied:
        """Apply on whatever version is live now (re-applied on conflict, so nothing is lost); a running
        canary's candidate takes the same change unless that would overwrite the canary's own."""

        def make(state: State) -> Outcome:
            new = build_checked(change, state.live)
            refuse_noop(state.live, new, change.summary)
            if state.canary is None:
                return Outcome(change.summary, new)
            return Outcome(change.summary, new, _followed(state.canary, change, state.live, new))

        return await self._commit(user, "change", make)

    async def apply_exact(self, proposed: Policy, base_version: int, user: str, summary: str,
                          action: str = "change", **detail: Any) -> Applied:
        """Apply a previewed policy only if the live version is still the one it was previewed on."""

        def make(state: State) -> Outcome:
            live = state.live
            if live.version != base_version:
                raise ChangeError(
                    f"stale preview: it was made against version {base_version}, the policy is now at "
                    f"version {live.version}. Run the command again to preview against the current policy."
                )
            refuse_noop(live, proposed, summary)
            return Outcome(summary, proposed, _carried(state.canary, live, proposed))

        return await self._commit(user, action, make, **detail)

    async def undo_preview(self, user: str, entry_id: str | None = None) -> tuple[str, Policy, str]:
        """(summary, policy an undo would restore, history entry it undoes), by the rules of `undo`: for
        `undo --dry-run`, and to check an undo's channels before it commits."""
        target = pick_undo(await newest_undoable(self.redis), user, entry_id)
        live = await self.policies.current(force=True)
        return f"undo: {target.summary}", _restore(target, live), target.id

    async def undo(self, user: str, entry_id: str | None = None) -> Applied:
        """Re-apply the policy from before the caller's newest change (or the newest change, by id) as a
        new version."""

        def make(state: State) -> Outcome:
            target = pick_undo(state.undo_target, user, entry_id)
            live = state.live
            # Content, not version: after an undo the live policy is an older state under a new number.
            if not unchanged(live, target.after):
                raise ChangeError(
                    f"cannot undo “{target.summary}”: the policy was changed since (outside the history); "
                    f"make the change you want explicitly"
                )
            new = _restore(target, live)
            return Outcome(f"undo: {target.summary}", new, _carried(state.canary, live, new), {"undoes": target.id})

        return await self._commit(user, "undo", make, undo=True)

    # -- canary -------------------------------------------------------------------------------

    async def start_canary(self, change: Change, share: float, user: str,
                           proposed: Policy | None = None, base_version: int | None = None) -> Applied:
        if not 0 < share < 100:
            raise ChangeError("canary share must be between 0% and 100% (exclusive), e.g. --canary 10%")

        def make(state: State) -> Outcome:
            live, canary = state.live, state.canary
            if canary is not None:
                raise ChangeError(f"a canary is already running (“{canary.summary}”, {canary.share:g}%); "
                                  "`canary promote` or `canary drop` it first")
            if base_version is not None and live.version != base_version:
                raise ChangeError(f"stale preview: the policy is now at version {live.version}, not "
                                  f"{base_version}. Run the command again.")
            candidate = proposed or build_checked(change, live)
            refuse_noop(live, candidate, change.summary)
            run = Canary(id=secrets.token_hex(6), share=share, policy=candidate, base_version=live.version,
                         user=user, summary=change.summary, started_at=time.time())
            return Outcome(f"canary {share:g}%: {change.summary}", canary=run.to_json())

        return await self._commit(user, "canary_start", make, share=share)

    async def promote_canary(self, user: str) -> Applied:
        def make(state: State) -> Outcome:
            live, canary = state.live, state.canary
            if canary is None:
                raise ChangeError("no canary is running")
            if live.version != canary.base_version:
                raise ChangeError(f"the live policy changed (version {canary.base_version} → {live.version}) "
                                  "while the canary ran; `canary drop` it and start again")
            if unchanged(live, canary.policy):
                raise ChangeError(f"nothing to promote: the canary (“{canary.summary}”) is the same as the live "
                                  f"policy v{live.version} now; `canary drop` it")
            data = canary.policy.model_dump(mode="json")
            data["version"] = live.version + 1
            return Outcome(f"promote canary: {canary.summary}", Policy.model_validate(data), "")

        return await self._commit(user, "canary_promote", make)

    async def drop_canary(self, user: str) -> Applied:
        def make(state: State) -> Outcome:
            if state.canary is None:
                raise ChangeError("no canary is running")
            return Outcome(f"drop canary: {state.canary.summary}", canary="")

        return await self._commit(user, "canary_drop", make)

    # -- reading ------------------------------------------------------------------------------

    async def history(self, count: int = 10) -> list[dict[str, str]]:
        """Newest first, without the bulky policy bodies."""
        out = []
        for entry_id, fields in stream_rows(await self.redis.xrevrange(HISTORY, count=count)):
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
