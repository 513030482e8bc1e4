"""Did the bot's answer finish the job? Silence says yes, a comeback says no.

After the bot answers, a deadline is set; if the customer has not written again by then, the
conversation is closed as resolved by automation and the automation learner gets a success label.
A customer who comes back within the reopen window turns that into a failure label instead.

A thank-you after that close is answered by the bot, and its silence closes the conversation again without a
label (kind `CLOSING`): the success was recorded for the question, and a second one paired with the same text
weighed it double.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

import redis.asyncio as aioredis
import structlog

from gateway import optout
from gateway.domain import Conversation, ConversationState, Direction, Message, Outcome, Scores, utcnow
from gateway.effects import Effects, never_found
from gateway.follow_ups import is_reaction
from gateway.scheduler import Clock, Deadline, SlaScheduler, SystemClock
from gateway.store import ConversationStore
from integrations.automation.acknowledge import is_acknowledgement
from learners.outcomes import publish_outcome

log = structlog.get_logger(__name__)

BOT_AGENT = "bot"
KIND = "bot_check"
CLOSING = "bot_closing"
"""The silence check after the bot's answer to a thank-you for a conversation it had closed: closes, no label."""
CHECK_TRIES = 5
"""A silence check that fails this often in one process is dropped (logged): one that can never succeed (an
unreadable conversation) came back every lease for ever."""
CHECKS_PREFIX = "sb:botcheck"
"""Where the silence checks are scheduled (an `SlaScheduler` of their own)."""


class Comeback(enum.Enum):
    """What a message to a resolved conversation says about the bot's resolve."""

    NOT_THE_BOTS = "not the bot's"  # still open, or a person resolved it
    THANKS = "thanks"  # a closing: nothing taken back
    FAILED = "failed"  # the resolve was not one: a failure label was published


class BotFollowUp:
    def __init__(self, redis: aioredis.Redis, store: ConversationStore, quiet_s: int = 1800,
                 clock: Clock | None = None) -> None:
        self.redis = redis
        self.store = store
        self.quiet_s = quiet_s
        self.clock = clock or SystemClock()
        self.deadlines = SlaScheduler(redis, key_prefix=CHECKS_PREFIX, escalations_key=f"{CHECKS_PREFIX}:log")
        self._failures: dict[str, int] = {}

    async def answered(self, conv: Conversation, closing: bool = False) -> None:
        """`closing`: the answer was to a thank-you after the bot's resolve (`Comeback.THANKS`). Either check
        replaces the other: a question after the thank-you, answered before the silence, is labelled as ever."""
        due = Deadline(conv.id, CLOSING if closing else KIND, self.clock.now() + self.quiet_s)
        async with self.redis.pipeline(transaction=False) as pipe:
            self.deadlines.stage_replace(pipe, conv.id, [due])
            await pipe.execute()

    async def comeback(self, conv: Conversation, effects: Effects, name: str, answered_on: Scores | None = None,
                       text: str = "") -> Comeback:
        """The customer wrote again after a bot resolution: the earlier success was not one. `answered_on`:
        the scores the bot answered on, which the success label was paired with too.

        Once per message (`name` in its effect log): published directly, a comeback whose card Slack refused
        for a while published a failure label on every retry, and the learner took the bot for worse.

        Unless `text` only thanks or says goodbye ("Thanks, that helped!" an hour later): that took back the
        success the customer was thanking the bot for. Such a message is routed as before, and the bot decides:
        it answers a closing, or hands it off (frustrated, asking for a person), and a hand-off has its label."""
        await self.deadlines.cancel(conv.id)
        if conv.state is not ConversationState.RESOLVED or conv.agent != BOT_AGENT:
            return Comeback.NOT_THE_BOTS
        if is_acknowledgement(text):
            log.info("bot_thanked_after_resolve", conversation_id=conv.id)
            return Comeback.THANKS
        await publish_failure_once(self.redis, effects, name, conv, answered_on, "reopened within window")
        return Comeback.FAILED

    async def tick(self) -> int:
        """Close the conversations whose bot answer met silence; returns how many. One deadline's failure before
        the conversation is closed (unreadable, Redis refusing the write) no longer drops the rest of the batch: it
        is logged, and its lease brings it back (`SlaScheduler.due`), up to `CHECK_TRIES` times in this process.
        A failure after the close (the label's publish) is logged and that label lost."""
        closed = 0
        for deadline in await self.deadlines.due(self.clock.now()):
            if deadline.running_out(self.clock.now()):
                break
            member = f"{deadline.conversation_id}|{deadline.kind}"
            try:
                closed += await self._check(deadline)
            except Exception as exc:
                self._failures[member] = tries = self._failures.get(member, 0) + 1
                if tries < CHECK_TRIES:
                    log.warning("bot_check_failed", conversation_id=deadline.conversation_id, attempt=tries,
                                error=repr(exc)[:300])
                    continue
                log.error("bot_check_dropped", conversation_id=deadline.conversation_id, attempts=tries,
                          error=repr(exc)[:300])
            self._failures.pop(member, None)
            await self.deadlines.done(deadline)
        return closed

    async def _check(self, deadline: Deadline) -> int:
        conv = await self.store.load(deadline.conversation_id)
        if conv is not None and conv.state is ConversationState.NEW:
            # The worker that sent the answer has not saved the state yet: look again shortly.
            await self.deadlines.schedule(conv.id, deadline.kind, self.clock.now() + 5)
            return 0
        said = [m for m in conv.messages if asks(conv, m)] if conv is not None else []
        if conv is None or conv.state is not ConversationState.AUTOMATED or not said:
            return 0
        if said[-1].direction is not Direction.OUTBOUND:
            return 0  # the customer wrote again; that message is being routed
        last_at = said[-1].at.timestamp()
        if last_at > self.clock.now() - self.quiet_s:
            # A newer bot answer (or hand-off notice) than the one this deadline was set for: the
            # customer came back and a worker is answering. Resolving now would be overwritten by
            # that worker and leave the learner two contradicting labels; wait for its silence. Unless that
            # answer planned its own check (`answered`): put back beside it, a closing check fell due first and
            # closed a real question's conversation without its label.
            if not [d for d in await self.deadlines.pending(conv.id) if d.kind != deadline.kind]:
                await self.deadlines.schedule(conv.id, deadline.kind, last_at + self.quiet_s)
            return 0
        seen = conv.model_copy()
        conv.state, conv.resolved_at, conv.agent = ConversationState.RESOLVED, utcnow(), BOT_AGENT
        # A Resolve form opened before this is stale after a reopen (see `ConversationStore.resolve_count`).
        conv.resolves = await self.store.resolve_count(conv) + 1
        if not await self.store.save_if(conv, ("state", "resolved_at", "agent", "resolves"), seen):
            # An agent acted on it meanwhile (claimed, resolved, handed it to people): theirs stands, and a
            # second resolve here told the learner the bot succeeded at what a person did.
            log.info("automation_resolve_overtaken", conversation_id=conv.id)
            return 0
        await self.store.count_legacy_resolve(conv.id)
        await self.store.mark_closed(conv)
        if deadline.kind == CLOSING:
            log.info("automation_closed_after_thanks", conversation_id=conv.id)
            return 1
        await publish_outcome(self.redis, Outcome(
            conversation_id=conv.id, kind="automation_resolved", automation_failed=False,
            text=answered_text(conv),
            predicted=conv.scores.model_dump(mode="json") if conv.scores else {},
        ))
        log.info("automation_resolved", conversation_id=conv.id)
        return 1

    async def run(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                log.warning("bot_followup_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


def asks(conv: Conversation, message: Message) -> bool:
    """Whether a message counts as the customer writing again. A 👍 on the bot's answer or STOP asks nothing (the
    pipeline threads them quietly, routing nothing): taken for a comeback, the silence check dropped its deadline
    for good, and the answer the customer liked was never labelled."""
    if message.direction is not Direction.INBOUND:
        return True
    return not (is_reaction(message) or optout.keyword(conv, message) is not None)


def answered_text(conv: Conversation, comeback: bool = False) -> str:
    """The customer's words the bot's answer was scored on, for its success and its failure alike: the last five
    messages that ask something, before the `comeback` when there is one. The failure took four ([-5:-1]), and
    kept a 👍 the success left out: the two labels of one answer were two different texts to the learner."""
    said = [m.text for m in conv.messages if m.direction is Direction.INBOUND and asks(conv, m)]
    return "\n".join((said[:-1] if comeback else said)[-5:])


async def publish_failure_once(
    redis: aioredis.Redis, effects: Effects, name: str, conv: Conversation, answered_on: Scores | None, reason: str
) -> None:
    """The bot's earlier answer did not finish the job: a label for the automation learner, paired with
    the text and scores the bot answered on (the customer's comeback is not part of either)."""

    async def publish() -> str:
        outcome = Outcome(
            conversation_id=conv.id,
            kind="automation_handoff",
            text=answered_text(conv, comeback=True) or conv.last_inbound_text,
            automation_failed=True,
            correction=reason,
            predicted=answered_on.model_dump(mode="json") if answered_on else {},
        )
        return await publish_outcome(redis, outcome)

    await effects.once(name, publish, never_found)


async def publish_unanswerable_once(
    redis: aioredis.Redis, effects: Effects, name: str, conv: Conversation, reason: str
) -> None:
    """The bot's first look at a message the router gave it, and it could not answer: a label for the automation
    learner too, paired with that text. Only a bot that had answered before was labelled, so messages it handed
    on every time taught nothing and their automation score stayed high (0.93 for texts it never once answered)."""

    async def publish() -> str:
        outcome = Outcome(
            conversation_id=conv.id,
            kind="automation_handoff",
            text="\n".join(m.text for m in conv.inbound[-5:]),
            automation_failed=True,
            correction=reason,
            predicted=conv.scores.model_dump(mode="json") if conv.scores else {},
        )
        return await publish_outcome(redis, outcome)

    await effects.once(name, publish, never_found)
