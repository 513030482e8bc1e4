"""What agents do to a conversation (claim, release, transfer, resolve, hand back to the bot, reply).

Slack-free on purpose: the Slack listeners translate clicks into these calls, and tests or another
desk could call them the same way. Claims are one Lua script, so with fifty agents clicking at once
exactly one wins, and capacity is checked in the same atomic step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog

from gateway import keys, metrics
from gateway.agents import RELEASE_CLAIM, remember_agent
from gateway.domain import Conversation, ConversationState, Outcome, new_id, utcnow
from gateway.policy_store import PolicyStore
from gateway.sla import SlaTracker, sla_now
from gateway.store import ConversationStore, counted
from learners.outcomes import publish_outcome
from router.policy import Policy

log = structlog.get_logger(__name__)

_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder then
  if holder == ARGV[1] then return {1, holder} end
  return {0, holder}
end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {2, ''} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return {1, ARGV[1]}
"""


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str
    conversation: Conversation | None = None
    before: Conversation | None = None
    """The conversation as read just before the change was written."""


CHANGE_ATTEMPTS = 3
ALREADY_RESOLVED = "That conversation is already resolved."
RESOLVED_SINCE = ("Someone resolved this conversation after you opened this form, and the customer has "
                  "written again since: it is open with their new message. Read it on the card, then resolve "
                  "it from there if it is done.")
Change = Callable[[Conversation, str | None], "tuple[str, ...] | Result"]
"""Applies an agent's action to a conversation read with its claim holder: the fields to write, or a refusal."""
Queue = Callable[[Conversation, Conversation], dict[str, str] | None]
"""The work to queue with the write (changed conversation, as read)."""


class DeskOps:
    def __init__(
        self, redis: aioredis.Redis, store: ConversationStore, policies: PolicyStore, sla: SlaTracker | None = None
    ) -> None:
        self.redis = redis
        self.store = store
        self.policies = policies
        self.sla = sla
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(RELEASE_CLAIM)

    def _sla_now(self) -> datetime:
        """The SLA clock, not the wall clock: claims and releases start windows the ladder counts from."""
        return datetime.fromtimestamp(sla_now(self.sla), UTC)

    async def _replan(self, conv: Conversation, fresh_claim: bool = False) -> None:
        if self.sla is not None:
            await self.sla.replan(conv, fresh_claim=fresh_claim)

    async def audit(self, action: str, user: str, conversation_id: str, **detail: object) -> None:
        entry = {"action": action, "user": user, "conversation_id": conversation_id, "at": time.time(), **detail}
        await self.redis.xadd(keys.AUDIT, {"data": json.dumps(entry, default=str)}, maxlen=100_000, approximate=True)
        log.info("desk_action", action=action, user=user, conversation_id=conversation_id, **detail)

    async def resolve_refusal(self, conversation_id: str, seen_resolves: int | None) -> str | None:
        """Why a Resolve form opened at `seen_resolves` cannot be submitted now (None: it can). Checked again
        by `resolve` itself; this lets the form answer in place, before Slack closes it."""
        conv = await self.store.load(conversation_id)
        if conv is None:
            return "That conversation no longer exists."
        return _stale(conv, seen_resolves, await self.store.resolve_count(conv))

    async def holder(self, conversation_id: str) -> str | None:
        raw = await self.redis.get(keys.claim(conversation_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def claim(self, conversation_id: str, user: str) -> Result:
        conv = await self.store.load(conversation_id)
        if conv is None:
            return Result(False, "That conversation no longer exists.")
        if conv.state is ConversationState.RESOLVED:
            return Result(False, "That conversation is already resolved.", conv)
        policy = await self.policies.current()
        capacity = policy.capacity_of(user)
        status, holder = await self._claim(
            keys=[keys.claim(conversation_id), keys.agent_open(user)], args=[user, capacity, conversation_id]
        )
        holder = holder.decode() if isinstance(holder, bytes) else holder
        if int(status) == 0:
            return Result(False, f"Already claimed by <@{holder}>.", conv)
        if int(status) == 2:
            if capacity == 0:  # "you already have 0 open": resolving would not help
                return Result(False, "Your capacity is 0: you cannot claim conversations now (a lead sets it "
                              "with `/switchboard capacity`).", conv)
            return Result(False, f"You already have {capacity} open conversations (your capacity). "
                          "Resolve or release one first.", conv)
        # The holder clicking Claim again (the card is redrawn with the button after an escalation) keeps it.
        now = self._sla_now()
        claimed_at = conv.claimed_at if conv.claimed_by == user and conv.claimed_at else now
        seen = conv.model_copy()
        conv.state, conv.claimed_by, conv.agent, conv.claimed_at = ConversationState.CLAIMED, user, user, claimed_at
        # Compare-and-set against what was read above: a resolve, transfer or new card that landed in
        # between wins, and the claim just taken is given back instead of marking it claimed.
        try:
            saved = await self.store.save_if(conv, ("state", "claimed_by", "agent", "claimed_at"), seen)
        except BaseException:
            # The key is taken but the state may not say so (a dropped connection, a timeout): held, it told
            # every other agent "Already claimed" on a card reading unclaimed, which the ladder escalated.
            await self._keep_or_give_back(conversation_id, user)
            raise
        if not saved:
            current = await self._keep_or_give_back(conversation_id, user)
            if current is not None and current.claimed_by == user:
                return Result(True, "claimed", current)
            return Result(False, "That conversation changed as you clicked (resolved, transferred or "
                          "re-posted); look at its latest card and claim it again.", current)
        await remember_agent(self.redis, user)
        await self._replan(conv, fresh_claim=seen.claimed_by != user)
        metrics.claimed(conv.skill, conv.card_ts)
        await self.audit("claim", user, conversation_id)
        return Result(True, "claimed", conv)

    async def _keep_or_give_back(self, conversation_id: str, user: str) -> Conversation | None:
        """After the claim script, when the state write lost or failed: the conversation as it is now, with the
        claim given back unless it reads claimed by `user`. Still theirs: a double click (the other click wrote
        first), a re-click while a new card was posted, or a write that landed with its answer lost; releasing
        then dropped a claim the conversation shows. Otherwise whatever won (a resolve, transfer or reassign)
        dropped the claim, which the script had just taken again."""
        current = await self.store.load(conversation_id)
        if current is None or current.claimed_by != user:
            await self._release(keys=[keys.claim(conversation_id), keys.agent_open(user)],
                                args=[user, conversation_id])
        return current

    async def _change(self, conversation_id: str, change: Change, queue: Queue | None = None) -> Result:
        """Read, change, then write with a compare-and-set that drops the claim in the same step; read
        again if something moved in between (a claim, an SLA step, the worker's new card).

        Dropping the claim before the write (as this used to) let a claim land in the gap: the
        conversation read as unclaimed while its claim stayed held, and that agent's capacity with it."""
        for _ in range(CHANGE_ATTEMPTS):
            conv = await self.store.load(conversation_id)
            if conv is None:
                return Result(False, "That conversation no longer exists.")
            seen, holder = conv.model_copy(), await self.holder(conversation_id)
            changed = change(conv, holder)
            if isinstance(changed, Result):
                return changed
            work = queue(conv, seen) if queue is not None else None
            if await self.store.save_if(conv, changed, seen, drop_claim_of=holder, then_queue=work):
                return Result(True, "", conv, seen)
        return Result(False, "That conversation is changing right now; try again in a moment.")

    async def release(self, conversation_id: str, user: str) -> Result:
        def change(conv: Conversation, holder: str | None) -> tuple[str, ...] | Result:
            if holder != user:
                return Result(False, f"Only <@{holder}> can release it." if holder else "It is not claimed.")
            # The queue's window keeps counting from the customer's wait (no `requeued_at`): a claim and a
            # release every few minutes would otherwise hold the escalation and the leads off for ever.
            conv.state, conv.claimed_by = ConversationState.WAITING, None
            return ("state", "claimed_by")

        result = await self._change(conversation_id, change)
        if not result.ok or result.conversation is None:
            return result
        await self._replan(result.conversation)
        await self.audit("release", user, conversation_id)
        return Result(True, "released", result.conversation)

    async def transfer(self, conversation_id: str, user: str, skill: str) -> Result:
        """Re-skill the conversation now and queue its move to the new skill's channel.

        The worker posts the new card from the customer's partition stream (`gateway.transfers`), so the
        move is ordered with their messages: none is threaded under the old card once it is moved."""
        policy = await self.policies.routed_under(conversation_id)  # the arm `transfers.move_card` routes by
        if skill not in policy.skills:
            return Result(False, f"{await self._not_here(skill, policy)}; choose one of {', '.join(policy.skills)}.")

        def change(conv: Conversation, holder: str | None) -> tuple[str, ...] | Result:
            if conv.state is ConversationState.RESOLVED:
                # Moving it would put it back in the queue with its closed marker still set: once the reopen
                # window passed, the customer's next message started a new conversation and this one waited
                # for ever.
                return Result(False, f"{ALREADY_RESOLVED} If the customer writes again it reopens, and can be "
                              "transferred then.", conv)
            if conv.decision is None or not conv.card_ts:
                return Result(False, "That conversation has no card to move.", conv)
            if conv.moving_ref and conv.skill == skill:
                return Result(False, f"It is already on its way to {skill}.", conv)
            if conv.skill == skill and conv.decision.skill == skill:
                return Result(False, f"It is already with {skill}.", conv)
            # Back to the skill whose channel holds the card (a move elsewhere still queued, or a skill
            # corrected at resolve): nothing to post, and the queued move finds itself overtaken.
            conv.moving_ref = None if conv.decision.skill == skill else new_id("xfer")
            conv.skill, conv.claimed_by, conv.state = skill, None, ConversationState.WAITING
            # No label yet: the move teaches "misrouted: really <skill>" when it lands (`gateway.transfers`).
            # Taught at the click, a move the agent took back before it landed left that label in the learner.
            return ("skill", "claimed_by", "state", "moving_ref")

        def move(conv: Conversation, seen: Conversation) -> dict[str, str] | None:
            if conv.moving_ref is None:
                return None
            return {"kind": "transfer", "skill": skill, "from_skill": seen.skill or "", "user": user,
                    "ref": conv.moving_ref}

        result = await self._change(conversation_id, change, move)
        if not result.ok or result.conversation is None or result.before is None:
            return result
        conv, previous = result.conversation, result.before.skill
        await self._replan(conv)
        await self.audit("transfer", user, conversation_id, from_skill=previous, to_skill=skill)
        return Result(True, f"transferred from {previous} to {skill}", conv)

    async def _not_here(self, skill: str, arm: Policy) -> str:
        """Why a skill another arm of a running canary has is not one this conversation's arm routes to."""
        live = await self.policies.current()
        if skill in live.skills and arm is not live:
            return f"{skill} is not on the canary policy this conversation follows"
        if skill in await self.policies.skills():
            return f"{skill} is only on the canary policy, which this conversation is not in"
        return f"Unknown skill {skill!r}"

    async def resolve(
        self, conversation_id: str, user: str, *, skill: str, urgency: float | None, mood: str | None,
        note: str = "", csat: int | None = None, seen_resolves: int | None = None,
        notify: dict[str, str] | None = None,
    ) -> Result:
        """`seen_resolves`: the count of resolves when the agent's form opened (`ConversationStore.resolve_count`); a
        resolve and a reopen since then make the form stale. Checked on the conversation this write compares
        against, and the count is guarded by it, so a resolve and reopen landing in between make it read again.

        `notify`: the customer's "resolved" notice, queued in the write's own step. Queued after the card's redraw,
        a redraw Slack refused (or a restart in between) left a resolve the customer never heard of."""

        legacy = await self.store.legacy_resolves(conversation_id)

        def change(conv: Conversation, holder: str | None) -> tuple[str, ...] | Result:
            count = counted(conv, legacy)
            refused = _stale(conv, seen_resolves, count)
            if refused is not None:
                return Result(False, refused, conv)
            conv.resolves = count + 1
            # The resolver worked it last (a transfer hands it over): the one who may still write an afterthought,
            # and the previous agent when the customer comes back. It was only ever set by a claim.
            conv.agent = user
            conv.state, conv.resolved_at, conv.claimed_by = ConversationState.RESOLVED, utcnow(), None
            conv.skill, conv.moving_ref = skill or conv.skill, None  # a queued move finds itself overtaken
            conv.taught_skill = None  # used up by this resolve: a reopened episode's resolve teaches again
            return ("state", "resolved_at", "claimed_by", "skill", "moving_ref", "taught_skill", "resolves", "agent")

        result = await self._change(conversation_id, change, (lambda conv, seen: notify) if notify else None)
        if not result.ok or result.conversation is None:
            return result
        conv, taught = result.conversation, result.before.taught_skill if result.before else None
        await self.store.count_legacy_resolve(conversation_id)
        await self.store.mark_closed(conv)
        # No automation label here: a bot that had answered and then needed a person was labelled when it
        # handed off (or the customer came back), and a second "failed" at resolve counted it twice.
        final = skill or conv.skill
        await publish_outcome(
            self.redis,
            agent_outcome(conv, "resolved", user, final_skill=final, urgency=urgency, mood=mood, csat=csat,
                          skill_taught=final is not None and final == taught),
        )
        await self._replan(conv)
        await self.audit("resolve", user, conversation_id, skill=skill, note=note[:500])
        return Result(True, "resolved", conv)

    async def to_bot(self, conversation_id: str, user: str) -> Result:
        def change(conv: Conversation, holder: str | None) -> tuple[str, ...] | Result:
            if conv.state is ConversationState.RESOLVED:  # same dead end as a transfer (see there)
                return Result(False, f"{ALREADY_RESOLVED} If the customer writes again it reopens, and can be "
                              "handed to the bot then.", conv)
            conv.state, conv.claimed_by, conv.moving_ref = ConversationState.AUTOMATED, None, None
            return ("state", "claimed_by", "moving_ref")

        result = await self._change(conversation_id, change)
        if not result.ok or result.conversation is None:
            return result
        await self._replan(result.conversation)
        await self.audit("to_bot", user, conversation_id)
        return Result(True, "handed back to the bot", result.conversation)


def _stale(conv: Conversation, seen_resolves: int | None, count: int) -> str | None:
    """Why a resolve by a form opened at `seen_resolves` must not land on `conv`, resolved `count` times (None: it
    may)."""
    if conv.state is ConversationState.RESOLVED:  # a second resolve told the customer and learners twice
        return ALREADY_RESOLVED
    if seen_resolves is not None and count != seen_resolves:
        return RESOLVED_SINCE
    return None


def agent_outcome(conv: Conversation, kind: str, user: str, **labels: object) -> Outcome:
    """A label from an agent's action, paired with the text and scores the routing was judged on."""
    return Outcome.model_validate(
        {
            "conversation_id": conv.id,
            "kind": kind,
            "text": "\n".join(m.text for m in conv.inbound[-5:]),
            "agent": user,
            "predicted": conv.scores.model_dump(mode="json") if conv.scores else {},
            **labels,
        }
    )
