"""SLA deadlines wired to the desk: plan them on every state change, fire them from the worker.

The ladder itself (`router/sla.py`) is pure; this module builds its input from a stored conversation,
carries out what it asks (re-ping, move the card, reassign), and records every escalation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.exceptions import WatchError

from gateway import keys, metrics, optout
from gateway.agents import agent_loads
from gateway.domain import (
    BOT_ANSWER,
    Conversation,
    ConversationState,
    Direction,
    Message,
    ends_wait,
    is_bot_answer,
    is_human_reply,
)
from gateway.follow_ups import is_reaction
from gateway.optout import Keyword
from gateway.policy_store import PolicyStore
from gateway.ports import AgentDesk
from gateway.redis_conn import as_str
from gateway.scheduler import Clock, SlaScheduler, SystemClock
from gateway.store import ConversationStore
from router.policy import Policy
from router.sla import ActionKind, SlaAction, SlaState, SlaStep, actions_due

log = structlog.get_logger(__name__)

CLAIMED_STEPS = frozenset({SlaStep.NUDGE.value, SlaStep.REASSIGN.value})
STEP_RETRY_S = 30.0
"""A step that failed (Slack down, a channel the bot cannot post to) is tried again this much later."""
PLANNED_UNDER = f"{keys.PREFIX}sla:policy_version"
"""The policy version the pending ladders were last planned under, all of them."""
REPLANNING = f"{keys.PREFIX}sla:replanning"
REPLANNING_S = 300
UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _done_key(conversation_id: str) -> str:
    return f"{keys.PREFIX}sla:done:{conversation_id}"


def sla_now(sla: SlaTracker | None) -> float:
    """The SLA clock (tests move it), or the wall clock where there is no tracker: claims, reassigns and the
    channels' time windows are measured on the clock the ladder counts with."""
    return sla.clock.now() if sla is not None else time.time()


def _asks_nothing(conv: Conversation, m: Message) -> bool:
    """A STOP or a WhatsApp reaction: threaded for the agent, but no wait starts (nobody can answer a STOP,
    nobody owes an answer to a 👍). Counted, a later re-plan chased agents over them."""
    if m.direction is not Direction.INBOUND:
        return False
    return is_reaction(m) or optout.keyword(conv, m) is Keyword.OUT


def _ends_wait(m: Message, last_inbound: str | None) -> bool:
    """A person's reply ends the wait; a bot answer only if it answers the customer's latest message. The answer
    is written once delivered, so a message that came in while it was being sent stands before it
    (`[m1, m2, bot:m1]`): m2 is still waiting, and read as answered, its hand-off planned no deadline."""
    if not ends_wait(m):
        return False
    return not is_bot_answer(m) or m.id.removeprefix(BOT_ANSWER) == last_inbound


def sla_state(conv: Conversation, done: frozenset[str]) -> SlaState:
    """The customer's current wait: since their oldest message after the last reply (a person's, or the
    bot's answer: a hand-off after the bot is timed from the message that asked for a person, not from the
    first message the bot answered). `responded` counts people only (first vs next response target)."""
    waiting_since: float | None = None
    responded = False
    replied = conv.replied_at.timestamp() if conv.replied_at else None  # a reply on its way counts already
    last_inbound: str | None = None
    for m in conv.messages:
        if replied is not None and m.at.timestamp() >= replied:
            responded, waiting_since, replied = True, None, None
        if _asks_nothing(conv, m):
            continue
        if _ends_wait(m, last_inbound):
            responded, waiting_since = responded or is_human_reply(m), None
        elif m.direction is Direction.INBOUND:
            last_inbound = m.id
            waiting_since = waiting_since if waiting_since is not None else m.at.timestamp()
    if replied is not None:  # replied after every message so far
        responded, waiting_since = True, None
    return SlaState(
        conversation_id=conv.id,
        skill=conv.skill or "general",
        waiting_since=waiting_since or conv.updated_at.timestamp(),
        claimed_by=conv.claimed_by,
        claimed_at=conv.claimed_at.timestamp() if conv.claimed_by and conv.claimed_at else None,
        requeued_at=conv.requeued_at.timestamp() if not conv.claimed_by and conv.requeued_at else None,
        responded=responded,
        answered=waiting_since is None,
        # The bot owns an automated conversation: no human SLA runs, even if a replan from a snapshot
        # read before "Back to bot" put its deadlines back.
        resolved=conv.state in (ConversationState.RESOLVED, ConversationState.AUTOMATED),
        channel=conv.slack_channel,
        done=done,
    )


class SlaTracker:
    def __init__(self, redis: aioredis.Redis, store: ConversationStore, policies: PolicyStore, desk: AgentDesk,
                 clock: Clock | None = None) -> None:
        self.redis = redis
        self.store = store
        self.policies = policies
        self.desk = desk
        self.clock = clock or SystemClock()
        self.scheduler = SlaScheduler(redis)
        self._followed: int | None = None
        self._unlock = redis.register_script(UNLOCK)

    async def _done(self, conversation_id: str) -> frozenset[str]:
        raw = await self.redis.smembers(_done_key(conversation_id))
        return frozenset(x.decode() if isinstance(x, bytes) else str(x) for x in raw)

    async def replan(self, conv: Conversation, new_wait: bool = False, fresh_claim: bool = False) -> None:
        """Call after any change that starts, ends or changes a wait (card, claim, reply, resolve).

        `new_wait`: the customer wrote after a reply, or a new card: every step may fire again.
        `fresh_claim`: another agent took it: only the claimed ladder (nudge, reassign) starts over. A
        release or the holder's re-click keeps what fired (it used to clear all, and re-pinged again)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            await self.stage_replan(pipe, conv, new_wait, fresh_claim)
            await pipe.execute()

    async def stage_replan(
        self, pipe: RedisPipeline, conv: Conversation, new_wait: bool = False, fresh_claim: bool = False
    ) -> None:
        """`replan` queued on the caller's pipeline; only a continuing wait reads (its steps done)."""
        if conv.state is ConversationState.AUTOMATED or (conv.card_ts is None and not conv.resolved_at):
            self.scheduler.stage_replace(pipe, conv.id, [])
            return
        fresh = conv.version == 0  # never saved: no ladder and no steps done yet (saved in this same MULTI)
        if new_wait:
            if not fresh:
                pipe.delete(_done_key(conv.id))
            done: frozenset[str] = frozenset()
        else:
            done = await self._done(conv.id)
            if fresh_claim:
                pipe.srem(_done_key(conv.id), *CLAIMED_STEPS)
                done -= CLAIMED_STEPS
        # The conversation's own arm: a canary's hours and skills route it, so they time its ladder too.
        self.scheduler.stage_plan(pipe, sla_state(conv, done), await self.policies.routed_under(conv.id), fresh)

    async def follow_policy(self) -> int:
        """Re-plan every pending ladder once per policy version; returns how many were re-planned.

        A ladder is planned under the policy of its time. A loosened target corrects itself (its early
        deadline fires, nothing is due, the ladder is re-planned), but a tightened one waited for each
        conversation's next change, so a lead's `sla` command did not reach the conversations already
        waiting. One worker does it (a lock); the others see the version recorded when it is done."""
        version = (await self.policies.current()).version
        if version == self._followed:
            return 0
        if as_str(await self.redis.get(PLANNED_UNDER) or "") == str(version):
            self._followed = version
            return 0
        token = uuid.uuid4().hex
        if not await self.redis.set(REPLANNING, token, nx=True, ex=REPLANNING_S):
            return 0
        try:
            replanned = 0
            for conversation_id in sorted(await self.scheduler.planned()):
                try:
                    replanned += await self._replan_unchanged(conversation_id)
                except (ValueError, KeyError) as exc:  # one unreadable conversation keeps its old ladder
                    log.error("sla_replan_failed", conversation_id=conversation_id, error=repr(exc)[:300])
            await self.redis.set(PLANNED_UNDER, version)
            self._followed = version
            log.info("sla_replanned_for_policy", version=version, conversations=replanned)
            return replanned
        finally:  # only our own lock: one that expired and another worker took is theirs
            await self._unlock(keys=[REPLANNING], args=[token])

    async def _replan_unchanged(self, conversation_id: str) -> int:
        """Re-plan from a read nothing has changed since (WATCH): a message handled between the read and
        the write re-planned from newer state, and this older read would replace that plan."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(3):
                try:
                    await pipe.watch(keys.conversation(conversation_id))
                    conv = await self.store.load(conversation_id)
                    if conv is None:
                        return 0
                    pipe.multi()
                    await self.stage_replan(pipe, conv)
                    await pipe.execute()
                    return 1
                except WatchError:
                    continue
        return 0  # changing right now: whoever changes it re-plans under the new policy

    async def tick(self) -> int:
        """Fire what is due now; returns how many actions ran. Safe with many workers (each deadline pops once)."""
        await self.follow_policy()
        now = self.clock.now()
        fired = 0
        seen: set[str] = set()
        for deadline in await self.scheduler.due(now):
            if deadline.running_out(self.clock.now()):
                break
            # One step per conversation per tick: the ladder is re-planned after each step, so two
            # deadlines popped together must not both act on a state the first has just changed.
            if deadline.conversation_id not in seen:
                seen.add(deadline.conversation_id)
                try:
                    fired += await self._fire(deadline.conversation_id, now)
                except Exception as exc:
                    # It comes back after a pause; the ladder decides afresh then. Should this write fail too
                    # (Redis away), the lease brings it, and the rest of the batch, back (`SlaScheduler.due`).
                    log.error("sla_step_failed", conversation_id=deadline.conversation_id, kind=deadline.kind,
                              error=repr(exc)[:300], retry_in=STEP_RETRY_S)
                    await self.scheduler.schedule(deadline.conversation_id, deadline.kind, now + STEP_RETRY_S)
                    continue
            await self.scheduler.done(deadline)
        return fired

    async def _fire(self, conversation_id: str, now: float) -> int:
        conv = await self.store.load(conversation_id)
        if conv is None:
            return 0
        policy = await self.policies.routed_under(conv.id)
        state = sla_state(conv, await self._done(conv.id))
        acted, fired = True, 0
        for action in actions_due(state, policy, now, await agent_loads(self.redis, policy)):
            acted = await self._run(conv, action, policy)
            if not acted:
                break
            metrics.sla_breach(action.step.value)
            await self.redis.sadd(_done_key(conv.id), action.step.value)
            await self.scheduler.record(action, now)
            fired += 1
        # An agent who acted first has re-planned from the state they left; re-planning from this
        # older read would replace their ladder (and mark a step done that never ran).
        if acted:
            await self.replan(conv)
        return fired

    async def _run(self, conv: Conversation, action: SlaAction, policy: Policy) -> bool:
        """Whether the step ran; False when an agent changed the conversation first."""
        return await RUNNERS[action.kind](self, conv, action, policy)

    async def _reping(self, conv: Conversation, action: SlaAction, policy: Policy) -> bool:
        who = f"<@{action.agent}> " if action.agent else ""
        await self.desk.note_in_thread(conv, f"⏰ {who}{action.reason}", broadcast=True)
        return True

    async def _move(self, conv: Conversation, action: SlaAction, policy: Policy) -> bool:
        # Names on both sides: `slack_channel` is Slack's id, so every leads step (the same channel as the
        # default escalation) posted a second card in #support-leads instead of pinging the first.
        if conv.decision is None or action.channel == conv.decision.channel:
            return await self._reping(conv, action, policy)
        decision = conv.decision.model_copy(
            update={"channel": action.channel, "priority": max(1, conv.decision.priority - 1),
                    "reasons": [f"escalated: {action.reason}", *conv.decision.reasons]}
        )
        ref = await self.desk.post_card(conv, decision, tag="escalation")
        # Listed at once, won or lost, so erasure finds it: only a crash in this one step can hide it.
        await self.store.stage_listed(self.redis, conv.id, ref.channel, ref.ts)
        moved = conv.model_copy(update={"decision": decision, "slack_channel": ref.channel, "card_ts": ref.ts})
        # Posting took a Slack round trip: an agent may have claimed, resolved or transferred the
        # conversation on its old card meanwhile. Their action wins; the new card says so.
        if not await self.store.save_if(moved, ("decision", "slack_channel", "card_ts"), expect=conv):
            await self.desk.retire_card(ref.channel, ref.ts, f"Handled on its earlier card meanwhile (`{conv.id}`): "
                                        "nothing to do here.")
            log.info("sla_escalation_superseded", conversation_id=conv.id, step=action.step.value)
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            self.store.stage_card(pipe, moved)
            await pipe.execute()
        await self.desk.update_card(conv, f"⬆️ Escalated to #{action.channel}: {action.reason}")
        conv.decision, conv.slack_channel, conv.card_ts, conv.version = decision, ref.channel, ref.ts, moved.version
        return True

    async def _reassign(self, conv: Conversation, action: SlaAction, policy: Policy) -> bool:
        back = conv.model_copy(update={"claimed_by": None, "state": ConversationState.WAITING,
                                       "requeued_at": datetime.fromtimestamp(self.clock.now(), UTC)})
        # Only if nothing moved since the tick read it (a resolve, or a release and re-claim, keeps its
        # new state and holder), and the claim goes in the same step so a crash cannot leave it held.
        if not await self.store.save_if(back, ("claimed_by", "state", "requeued_at"), expect=conv,
                                        drop_claim_of=conv.claimed_by):
            log.info("sla_reassign_superseded", conversation_id=conv.id)
            return False
        conv.claimed_by, conv.state, conv.requeued_at = None, ConversationState.WAITING, back.requeued_at
        conv.version = back.version
        hint = f" Suggested agent: <@{action.suggested_agent}>." if action.suggested_agent else ""
        await self.desk.update_card(conv, f"🔁 Back in the queue: {action.reason}")
        await self.desk.note_in_thread(conv, f"🔁 {action.reason}.{hint}", broadcast=True)
        return True

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # keep the loop alive; the deadline stays recorded as popped
                log.error("sla_tick_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


RUNNERS = {
    ActionKind.REPING: SlaTracker._reping,
    ActionKind.MOVE: SlaTracker._move,
    ActionKind.REASSIGN: SlaTracker._reassign,
}
