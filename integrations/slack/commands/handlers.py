"""One handler per verb, found through a table; each returns an `Answer` (never talks to Slack itself).

Permission rules live in the table, not in each handler: viewing is open to agents, changing needs the
lead role, and a refusal always says why and is logged on the audit stream.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway import dead_letters, stats
from gateway.identity import Identity
from gateway.policy_admin import Applied, ChangeError, build_checked, refuse_noop
from integrations.slack.commands import format as fmt
from integrations.slack.commands.changes import BUILDERS
from integrations.slack.commands.context import CommandContext, Role
from integrations.slack.commands.grammar import Parsed, UsageError, change_id
from integrations.slack.commands.reach import require_channels
from integrations.slack.commands.replay import recent_conversations, replay
from router.policy import Policy

log = structlog.get_logger(__name__)


@dataclass
class Request:
    user: str
    parsed: Parsed
    role: Role


@dataclass
class Answer:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    announce: str | None = None


Handler = Callable[[CommandContext, Request], Awaitable[Answer]]


@dataclass(frozen=True)
class Verb:
    handler: Handler
    lead: bool = False
    """Needs the lead role (changes). Dry runs of a change only need to view."""


async def _help(ctx: CommandContext, req: Request) -> Answer:
    return Answer(fmt.help_text(ctx.command))


async def _policy(ctx: CommandContext, req: Request) -> Answer:
    return Answer(fmt.policy_text(await ctx.policies.current(force=True), await ctx.policies.canary()))


async def _whoami(ctx: CommandContext, req: Request) -> Answer:
    r = req.role
    role = "lead" if r.lead else "agent" if r.agent else "not an agent"
    return Answer(f"<@{req.user}>: *{role}* — {r.why}.")


async def _history(ctx: CommandContext, req: Request) -> Answer:
    return Answer(fmt.history_text(await ctx.admin.history(10)))


async def _models(ctx: CommandContext, req: Request) -> Answer:
    health = await ctx.model_health()
    if health is None:
        return Answer("No learners in this process (the scorer is rules only).")
    return Answer(fmt.models_text(health))


async def _stats(ctx: CommandContext, req: Request) -> Answer:
    label = req.parsed.args[0].lower() if req.parsed.args else "24h"
    if label not in stats.WINDOWS:
        raise UsageError(f"stats window {label!r}: use one of {', '.join(stats.WINDOWS)}")
    window = stats.WINDOWS[label]
    overall = await stats.compute(ctx.redis, window)
    canary = await ctx.policies.canary(force=True)
    arms = await stats.compare_arms(ctx.redis, window, await ctx.policies.arms(canary.id)) if canary else None
    return Answer(fmt.stats_text(label, overall, arms, canary))


def _need_lead(role: Role) -> None:
    if not role.lead:
        raise PermissionError(f"only team leads can change routing ({role.why})")


LIVE_ONLY: dict[str, str] = {
    "sla": "SLA timers always follow the live policy",
    "capacity": "claim capacity always follows the live policy",
}
"""Changes a canary cannot split: what reads them never asks which arm a conversation is in."""


def _applied_line(user: str, applied: Applied) -> str:
    return f"🛠 <@{user}> changed the routing policy: {fmt.mrkdwn(applied.summary)} (v{applied.before.version} → " \
           f"v{applied.after.version})" + (" · the running canary took it too" if applied.canary_followed else "")


def _done(applied: Applied, prefix: str = "✅") -> str:
    also = "; the running canary took it too" if applied.canary_followed else ""
    return f"{prefix} {fmt.mrkdwn(applied.summary)} (policy v{applied.after.version}{also})."


async def _preview(ctx: CommandContext, req: Request, summary: str, proposed: Policy, live: Policy,
                   canary: float | None = None, action: str = "change", undoes: str = "") -> Answer:
    """Replay recent conversations with `proposed` vs `live`; leads get an Apply button for it."""
    conversations = await recent_conversations(ctx.redis, ctx.store, ctx.dry_run_n)
    result = replay(conversations, live, proposed, ctx.scorer, automation=ctx.settings.automation != "off")
    log.info("policy_dry_run", user=req.user, summary=summary, replayed=result.replayed, changed=result.changed,
             conversation_ids=[e.conversation_id for e in result.examples])
    pending = await ctx.previews.stash(req.user, summary, live.version, proposed, canary, action, undoes) \
        if req.role.lead else None
    return Answer(fmt.mrkdwn(fmt.dry_run_text(summary, result)), fmt.dry_run_blocks(summary, result, pending, canary))


async def _undo(ctx: CommandContext, req: Request) -> Answer:
    """`undo` takes back the caller's own newest change; `undo <id>` (from `history`) anyone's newest."""
    if len(req.parsed.args) > 1:
        raise UsageError("usage: undo [change id from `history`]")
    wanted = change_id(req.parsed.args[0]) if req.parsed.args else None
    summary, proposed, entry_id = await ctx.admin.undo_preview(req.user, wanted)
    live = await ctx.policies.current(force=True)
    if req.parsed.dry_run:
        return await _preview(ctx, req, summary, proposed, live, undoes=entry_id, action="undo")
    await require_channels(ctx, live, proposed)
    applied = await ctx.admin.undo(req.user, entry_id)
    return Answer(_done(applied, "↩️"), announce=_applied_line(req.user, applied))


async def _apply(ctx: CommandContext, req: Request) -> Answer:
    """`apply` (the user's latest preview) or `apply <token>` (what the Apply button sends)."""
    if req.parsed.args:
        return await apply_pending(ctx, req.user, req.parsed.args[0])
    pending = await ctx.previews.get(user=req.user)
    if pending is None:
        raise ChangeError("nothing to apply: preview a change with --dry-run first (previews last 15 minutes)")
    return await apply_pending(ctx, req.user, pending.token)


async def apply_pending(ctx: CommandContext, user: str, token: str) -> Answer:
    """Shared by typed `apply` and the Apply button."""
    pending = await ctx.previews.get(token=token)
    if pending is None:
        raise ChangeError("that preview has expired or was already applied; run the command again")
    await require_channels(ctx, await ctx.policies.current(force=True), pending.proposed)
    applied = await ctx.previews.apply(pending, user)
    if pending.canary_share is not None:
        return Answer(f"🐤 Canary started: {fmt.mrkdwn(pending.summary)} on {pending.canary_share:g}% of new "
                      "conversations.", announce=f"🐤 <@{user}> started a canary: {fmt.mrkdwn(applied.summary)}")
    return Answer(_done(applied, "✅ Applied:"), announce=_applied_line(user, applied))


async def _canary(ctx: CommandContext, req: Request) -> Answer:
    op = req.parsed.args[0].lower() if req.parsed.args else "status"
    if op == "status":
        canary = await ctx.policies.canary(force=True)
        if canary is None:
            return Answer("No canary is running.")
        arms = await stats.compare_arms(ctx.redis, 7 * 86400, await ctx.policies.arms(canary.id))
        return Answer(fmt.stats_text("7d (canary arms)", await stats.compute(ctx.redis, 7 * 86400), arms, canary))
    if op not in ("promote", "drop"):
        raise UsageError("usage: canary status|promote|drop")
    if op == "drop" and req.parsed.dry_run:
        raise UsageError("--dry-run previews changes; dropping a canary only stops it (see `canary status`)")
    running = await ctx.policies.canary(force=True)
    if op == "promote" and req.parsed.dry_run and running is not None:
        live = await ctx.policies.current()
        return await _preview(ctx, req, f"promote canary: {running.summary}", running.policy, live,
                              action="canary_promote")
    _need_lead(req.role)
    if op == "promote":
        if running is not None:
            await require_channels(ctx, await ctx.policies.current(force=True), running.policy)
        applied = await ctx.admin.promote_canary(req.user)
        return Answer(f"✅ Canary promoted: policy is now v{applied.after.version}.",
                      announce=_applied_line(req.user, applied))
    applied = await ctx.admin.drop_canary(req.user)
    return Answer(f"🗑 {fmt.mrkdwn(applied.summary)}.", announce=f"🗑 <@{req.user}>: {fmt.mrkdwn(applied.summary)}")


async def _change(ctx: CommandContext, req: Request) -> Answer:
    p = req.parsed
    if p.canary is not None and p.verb in LIVE_ONLY:
        raise UsageError(f"`{p.verb}` cannot run as a canary: {LIVE_ONLY[p.verb]}; apply it without --canary "
                         "(--dry-run previews it)")
    change = await BUILDERS[p.verb](p.args, ctx)
    if not p.dry_run:
        _need_lead(req.role)
    live = await ctx.policies.current(force=True)
    proposed = build_checked(change, live)
    refuse_noop(live, proposed, change.summary)
    if p.dry_run:
        return await _preview(ctx, req, change.summary, proposed, live, p.canary)
    await require_channels(ctx, live, proposed)
    if p.canary is not None:
        applied = await ctx.admin.start_canary(change, p.canary, req.user)
        return Answer(f"🐤 Canary started: {fmt.mrkdwn(change.summary)} on {p.canary:g}% of new conversations.",
                      announce=f"🐤 <@{req.user}> started a canary: {fmt.mrkdwn(applied.summary)}")
    applied = await ctx.admin.apply(change, req.user)
    return Answer(_done(applied), announce=_applied_line(req.user, applied))


async def _dead(ctx: CommandContext, req: Request) -> Answer:
    """Parked work is customers no agent has seen: listing is open to agents, replaying is a lead's."""
    op = req.parsed.args[0].lower() if req.parsed.args else "list"
    if op == "list":
        total, rows = await dead_letters.parked(ctx.redis)
        return Answer(fmt.dead_text(total, rows, ctx.command))
    if op != "replay":
        raise UsageError("usage: dead [replay]")
    if req.parsed.dry_run:
        raise UsageError(f"--dry-run previews policy changes; `{ctx.command} dead` lists what a replay queues")
    _need_lead(req.role)
    replayed = await dead_letters.replay(ctx.redis, ctx.store, ctx.settings.partitions, req.user)
    await ctx.admin.audit("dead_replayed", req.user, entries=replayed)
    return Answer(f"♻️ {replayed} parked entries queued again.",
                  announce=f"♻️ <@{req.user}> queued {replayed} parked entries again" if replayed else None)


MERGE_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


async def _merges(ctx: CommandContext, req: Request) -> Answer:
    """Open to agents: a card's history shows merged conversations, and this says on what grounds."""
    if len(req.parsed.args) != 1:
        raise UsageError("usage: merges <customer> (api:<id>, email:<address>, phone:+<number>, or a person id)")
    ref = req.parsed.args[0]
    identity = Identity(ctx.redis)
    person = await identity.person_of(ref)
    if person is None:
        raise ChangeError(f"no customer {ref!r} is known")
    return Answer(fmt.merges_text(ref, person, await identity.merges_of(person), ctx.command))


async def _unmerge(ctx: CommandContext, req: Request) -> Answer:
    if len(req.parsed.args) != 1 or not MERGE_ID.match(req.parsed.args[0]):
        raise UsageError(f"usage: unmerge <merge id from `{ctx.command} merges <customer>`>")
    if req.parsed.dry_run:
        raise UsageError(f"--dry-run previews policy changes; `{ctx.command} merges <customer>` shows the merge")
    record = req.parsed.args[0]
    if not await Identity(ctx.redis).unmerge(record):
        raise ChangeError(f"`{record}` is no merge, or it was undone already (see `{ctx.command} merges`)")
    await ctx.admin.audit("unmerge", req.user, merge=record)
    return Answer(f"↩️ Merge `{record}` undone: the joined person has their identities and conversations back.",
                  announce=f"↩️ <@{req.user}> undid customer merge `{record}`")


VERBS: dict[str, Verb] = {
    "help": Verb(_help),
    "policy": Verb(_policy),
    "whoami": Verb(_whoami),
    "history": Verb(_history),
    "models": Verb(_models),
    "stats": Verb(_stats),
    "canary": Verb(_canary),
    "dead": Verb(_dead),
    "undo": Verb(_undo, lead=True),
    "apply": Verb(_apply, lead=True),
    "merges": Verb(_merges),
    "unmerge": Verb(_unmerge, lead=True),
    **{name: Verb(_change) for name in BUILDERS},
}
NO_PREVIEW = frozenset({"apply"})


async def handle(ctx: CommandContext, user: str, parsed: Parsed) -> Answer:
    """Dispatch one parsed command; every failure becomes one line for the user."""
    role = await ctx.role(user)
    req = Request(user, parsed, role)
    verb = VERBS.get(parsed.verb)
    try:
        if verb is None:
            raise UsageError(f"unknown command {parsed.verb!r}; try `{ctx.command} help`")
        if not role.agent and not role.lead:
            raise PermissionError(f"Switchboard is for support agents ({role.why})")
        if parsed.canary is not None and parsed.verb not in BUILDERS:
            raise UsageError(f"--canary goes with a policy change ({', '.join(BUILDERS)}), not `{parsed.verb}`")
        if parsed.dry_run and parsed.verb in NO_PREVIEW:
            raise UsageError(f"--dry-run previews changes; `{parsed.verb}` has nothing to preview")
        if verb.lead and not parsed.dry_run:
            _need_lead(role)
        return await verb.handler(ctx, req)
    except PermissionError as exc:
        await ctx.admin.refused(user, parsed.raw, str(exc))
        return Answer(f"🚫 {exc}.")
    except (UsageError, ChangeError) as exc:
        log.info("command_rejected", user=user, verb=parsed.verb, reason=str(exc))
        return Answer(f"⚠️ {fmt.mrkdwn(str(exc))}")
