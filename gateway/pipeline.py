"""One inbound message's journey after it is stored: score → decide → automation or human card.

Every step is safe to repeat: a worker that crashed half-way and a second worker that picks the same
stream entry up again end in the same state, with one card and one thread message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import redis.asyncio as aioredis
import structlog

from gateway import guards, handback, keys, metrics, optout, outbound, prefetch, reengage, transfers
from gateway.agents import loads_for
from gateway.bot_followup import BOT_AGENT, BotFollowUp, Comeback, publish_failure_once, publish_unanswerable_once
from gateway.card_gone import thread_follow_up
from gateway.card_post import post_card
from gateway.dead_letters import ParkNow
from gateway.domain import (
    BOT_ANSWER,
    BOT_AUTHOR,
    ChannelKind,
    Conversation,
    ConversationState,
    CustomerProfile,
    Direction,
    Message,
    PastConversation,
    RouteKind,
    Scores,
    ends_wait,
    is_bot_answer,
    new_id,
)
from gateway.effects import Effects, never_found
from gateway.erasure import SWEEP, Eraser, sweep_entry
from gateway.follow_ups import follow_up, is_reaction
from gateway.identity import Identity
from gateway.outbound import FAILED, REFUSED
from gateway.policy_store import PolicyStore
from gateway.ports import AgentDesk, Automation, CustomerChannel
from gateway.redis_conn import execute
from gateway.retries import DeliveryRetries
from gateway.sla import SlaTracker
from gateway.store import ConversationStore
from gateway.streams import Ack, delivery
from learners import coldstart
from learners.base import Scorer
from router.context import RoutingContext
from router.decide import decide, suggested_agent
from router.policy import Policy
from router.sla import handoff_notice

log = structlog.get_logger(__name__)

RECENT_KEEP = 500
ROUTE_FIELDS = ("scores", "decision", "skill", "slack_channel", "card_ts", "state")


Handler = Callable[[Mapping[str, str], Ack | None], Awaitable[None]]


@dataclass
class Pipeline:
    redis: aioredis.Redis
    store: ConversationStore
    policies: PolicyStore
    scorer: Scorer
    desk: AgentDesk
    automation: Automation | None = None
    channels: Mapping[ChannelKind, CustomerChannel] = field(default_factory=dict)
    sla: SlaTracker | None = None
    retries: DeliveryRetries | None = None
    bot_followup: BotFollowUp | None = None

    identity: Identity | None = None
    eraser: Eraser | None = None
    round_trips: aioredis.Redis | None = None
    """The lean pool for the two round trips of every message (`redis_conn.round_trip_client`); `redis` if unset."""
    _handlers: dict[str, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Built once, not for every entry the worker handles.
        self._handlers = {
            "inbound": self.handle_inbound,
            "agent_reply": self.handle_outbound,
            "notify": self.handle_outbound,
            "transfer": partial(transfers.move_card, self),
            "retire": partial(transfers.retire, self),
            "note": partial(outbound.note, self),
            SWEEP: partial(sweep_entry, self),
        }

    async def _switch_channel(self, conv: Conversation, fields: Mapping[str, str]) -> None:
        """The customer wrote from another channel: keep the conversation, reply where they are now."""
        new = self.store.customer(fields["customer"], fields.get("profile", "{}"), fields.get("person"))
        merged = conv.customer.profile.model_dump(exclude_none=True) | new.profile.model_dump(exclude_none=True)
        previous = conv.customer.channel
        conv.customer = new.model_copy(update={"profile": CustomerProfile(**merged)})
        await self.store.save(conv, "customer")
        log.info("customer_switched_channel", conversation_id=conv.id, from_channel=previous.value,
                 to_channel=new.channel.value)

    async def _replan(self, conv: Conversation, new_wait: bool = False) -> None:
        if self.sla is not None:
            await self.sla.replan(conv, new_wait)

    async def handle(self, fields: Mapping[str, str], ack: Ack | None = None) -> None:
        """Table dispatch on the entry kind; customer messages carry no kind.

        `ack` rides on the final write of handlers that have one; the worker acks the rest."""
        handler = self._handlers.get(fields.get("kind", "inbound"))
        if handler is None:
            # Work a newer version queued (a rolling deploy): parked, so `dead replay` hands it to a worker
            # that knows it. Acknowledged and dropped, as it used to be, it was lost.
            raise ParkNow(f"unknown entry kind {fields.get('kind')!r} (queued by a newer version?)")
        await handler(fields, ack)

    async def handle_inbound(self, fields: Mapping[str, str], ack: Ack | None = None) -> None:
        conv_id, message_id = fields["conv"], fields["mid"]
        pre = prefetch.given(ack, conv_id) or await prefetch.read(
            self.round_trips or self.redis, self.store, conv_id, fields.get("person"), fields["customer"])
        snap = pre.snapshot
        conv = snap.conversation or self.store.create(
            conv_id, fields["customer"], fields.get("profile", "{}"), fields.get("person"), snap.transcript
        )
        message = next((m for m in conv.messages if m.id == message_id), None)
        if message is None:
            log.error("message_missing_from_transcript", conversation_id=conv_id, message_id=message_id)
            return
        if fields.get("merge") and self.identity is not None and fields.get("person"):
            await self.identity.merge(fields["person"], fields["merge"].split(","))
        if conv.customer.key != fields["customer"]:
            await self._switch_channel(conv, fields)
        if ack is not None and conv.partition is None:  # new (saved with it), or stored before partitions were kept
            conv.partition = ack.partition
            if conv.version:
                await self.store.save(conv, "partition")
        if pre.held_in:  # replies held for WhatsApp's window go out right after this message
            await reengage.release(self, conv, pre.held_in)
        fresh, since = delivery(ack, fields)
        effects = Effects(self.redis, keys.effects(conv.id), snap.effects, fresh=fresh, since=since)
        word = optout.keyword(conv, message)
        opted = word is not None and await optout.record(self, conv, message, word, effects)
        quiet = opted or is_reaction(message)
        if quiet and (not conv.card_ts or conv.state is ConversationState.AUTOMATED):
            # STOP or START, or a reaction: recorded (and STOP told); no card for it and no bot answer
            await self._commit(conv, (), False, effects, ack)
        elif quiet:
            await self._thread_quietly(conv, message, effects, ack)
        elif conv.card_ts and conv.state is ConversationState.AUTOMATED:
            # Handed back to the bot from the desk: the bot answers, or the card it has comes back to life.
            card, seen = conv.card_ts, conv.model_copy()
            await follow_up(self, conv, message, effects)
            await self._route(conv, message, effects, pre)
            if conv.state is not ConversationState.AUTOMATED:
                await self._came_back(conv, seen)
            moved = ("slack_channel", "card_ts") if conv.card_ts != card else ()
            await self._commit(conv, ("scores", *moved), True, effects, ack, card=bool(moved))
        elif conv.card_ts:
            index = conv.messages.index(message)
            new_wait = index == 0 or ends_wait(conv.messages[index - 1])
            before, card = (conv.state, conv.resolved_at), conv.card_ts
            if conv.state is ConversationState.RESOLVED and self.bot_followup is not None:
                # The bot closed it after an agent's Back to bot: a comeback takes its success back, as one
                # without a card does (`_route`); only that path had, so the false success stood alone.
                await self.bot_followup.comeback(conv, effects, f"comeback:{message.id}", conv.scores, message.text)
            await follow_up(self, conv, message, effects)
            # Only a reopen changes these. Writing them back unchanged would undo a claim or a resolve
            # an agent made while this message was being threaded (Slack takes 100-300 ms).
            changed = ("state", "resolved_at") if (conv.state, conv.resolved_at) != before else ()
            moved = ("slack_channel", "card_ts") if conv.card_ts != card else ()  # the card was gone: a new one
            await self._commit(conv, changed + moved, new_wait, effects, ack, card=bool(moved))
        else:
            await self._route(conv, message, effects, pre)
            await self._commit(conv, ROUTE_FIELDS, True, effects, ack, routed=True)

    async def _came_back(self, conv: Conversation, seen: Conversation) -> None:
        """The card of a conversation handed back to the bot is waiting again, unless an agent claimed or resolved
        it meanwhile (the card showed both buttons all along): then theirs stands, and this message is planned
        for. Written over it, "waiting" left a claim held on a conversation reading unclaimed, or reopened a
        resolve with its closed marker set. Not "automated" either: that could undo a claim just the same."""
        if await self.store.save_if(conv, ("state",), seen):
            return
        current = await self.store.load(conv.id)
        if current is not None:
            for name in ("state", "claimed_by", "claimed_at", "agent", "resolved_at", "version"):
                setattr(conv, name, getattr(current, name))
        log.info("back_from_bot_overtaken", conversation_id=conv.id, state=conv.state.value)

    async def _thread_quietly(self, conv: Conversation, message: Message, effects: Effects, ack: Ack | None) -> None:
        """Show the card's thread a message that asks nothing (STOP, START, a reaction), and change nothing else.

        Followed up like any message, it reopened a resolved conversation: broadcast to the channel, queued for
        agents and climbing the SLA ladder for a customer who had just unsubscribed, and a 👍 to our "resolved"
        message cost the open rating question (a "5" after it was no longer a rating). The wait is left as it
        was too: nobody owes an answer to a reaction, and nobody can answer a STOP."""
        card = conv.card_ts
        await thread_follow_up(self, conv, message, effects)
        log.info("quiet_message_threaded", conversation_id=conv.id, message_id=message.id, state=conv.state.value)
        moved = ("slack_channel", "card_ts") if conv.card_ts != card else ()  # the card was gone: a new one
        await self._commit(conv, moved, False, effects, ack, card=bool(moved), replan=bool(moved))

    async def _commit(
        self, conv: Conversation, fields: tuple[str, ...], new_wait: bool, effects: Effects, ack: Ack | None,
        routed: bool = False, card: bool = False, replan: bool = True,
    ) -> None:
        """Everything a handled message changes, in one MULTI: the conversation's fields, the card's
        thread index, the dry-run history, the SLA ladder (`replan`: unless nothing about the wait changed),
        deferred effect results and the stream ack.
        These used to be nine round trips; together they are also all-or-nothing, so a crash can no
        longer leave a saved conversation without its deadlines, or an acked entry half applied."""
        async with (self.round_trips or self.redis).pipeline(transaction=True) as pipe:
            at = self.store.stage_save(pipe, conv, *fields)
            effects.stage(pipe)
            if routed or card:
                self.store.stage_card(pipe, conv)
            if routed:
                # Recent conversations, replayed through `decide()` by policy dry runs. A conversation never
                # saved cannot be listed yet: LREM scans all 500 (~9 µs of Redis per new conversation, measured).
                if conv.version:
                    pipe.lrem(keys.RECENT, 0, conv.id)
                pipe.lpush(keys.RECENT, conv.id)
                pipe.ltrim(keys.RECENT, 0, RECENT_KEEP - 1)
            if self.sla is not None and replan:
                await self.sla.stage_replan(pipe, conv, new_wait)
            if ack is not None:
                ack.stage(pipe)
            own = list(pipe.command_stack)
            ahead = prefetch.stage_read_ahead(self.store, pipe, ack)
            results = await execute(pipe, raise_on_error=False)
            pipe.raise_first_error(own, results[: len(own)])  # this entry's own errors, as `execute` raises them
        conv.version = int(results[at])
        ahead(results)
        if ack is not None:
            ack.done = True

    def _customer_text(self, judged: Conversation) -> str:
        return "\n".join(m.text for m in judged.inbound[-5:])

    async def _context(
        self, conv: Conversation, judged: Conversation, policy: Policy, history: list[PastConversation],
        pre: prefetch.Prefetched,
    ) -> RoutingContext:
        """What decide() needs beyond the conversation: mood trend, bot history, the previous agent, and
        where an agent's "Back to bot" left off (`judged`: the messages since then, or all of them)."""
        previous = next((p for p in history if p.agent and p.agent != BOT_AGENT), None)
        handed_back_at = len(conv.inbound) - len(judged.inbound) if judged is not conv else None
        return RoutingContext(
            sentiment_history=tuple(coldstart.sentiment(m.text) for m in judged.inbound[-10:]),
            bot_answers=sum(1 for m in conv.messages if is_bot_answer(m)),
            reopened=conv.resolved_at is not None,
            previous_agent=previous.agent if previous else (conv.agent if conv.agent != BOT_AGENT else None),
            previous_conversation_id=previous.id if previous else None,
            previous_resolved_at=previous.resolved_at if previous else None,
            agents=tuple(loads_for(pre.agent_loads, policy)),
            automation=self.automation is not None,
            handed_back_at=handed_back_at,
        )

    async def _history(self, conv: Conversation, pre: prefetch.Prefetched) -> list[PastConversation]:
        if self.identity is None:
            return []
        if pre.person and conv.customer.person_id == pre.person:
            return await self.identity.history_of(pre.history_ids, conv.id)
        return await self.identity.history(conv.customer.person_id, conv.id)  # merged since: read again

    async def _route(self, conv: Conversation, message: Message, effects: Effects, pre: prefetch.Prefetched) -> None:
        # A canary's arm is chosen at a conversation's first routing (never saved yet), and kept after it.
        arm = self.policies.routed_under if conv.version else self.policies.for_conversation
        policy = await arm(conv.id)
        judged = handback.since_back_to_bot(conv, message)
        if judged is not conv:
            log.info("routed_since_back_to_bot", conversation_id=conv.id, message_id=message.id,
                     judged=len(judged.messages), of=len(conv.messages))
        scores = self.scorer.score(self._customer_text(judged), policy.skill_keywords())
        # What the bot was judged on when it answered: the label for its failure pairs with these, not with
        # scores that already read the customer's complaint about its answer.
        answered_on = conv.scores
        conv.scores = scores
        closing = False  # a thank-you after the bot's resolve: its answer's silence closes without a label
        if conv.state is ConversationState.RESOLVED and self.bot_followup is not None:
            closing = await self.bot_followup.comeback(conv, effects, f"comeback:{message.id}", answered_on,
                                                       message.text) is Comeback.THANKS
            conv.state, conv.resolved_at = ConversationState.NEW, None
            await self.store.mark_open(conv)
        was_automated = conv.state is ConversationState.AUTOMATED
        history = await self._history(conv, pre)
        context = await self._context(conv, judged, policy, history, pre)
        decision = decide(conv, scores, policy, context, message.at)
        if decision.route is RouteKind.AUTOMATION:
            handed_over = await self._try_automation(conv, judged, effects, message, answered_on, closing)
            if handed_over is not None:  # to people, routed as people are (after-hours channel, priority)
                human = decide(conv, scores, policy, context, message.at, human=True)
                decision = human.model_copy(update={"reasons": [f"handoff: {handed_over}", *human.reasons]})
        elif was_automated:
            await publish_failure_once(self.redis, effects, f"auto:{message.id}", conv, answered_on,
                                       reason=decision.reasons[0])
        if decision.route is RouteKind.HUMAN and (was_automated or decision.reasons[0].startswith("handoff")):
            notice = Message(
                id=f"handoff-{message.id}", direction=Direction.OUTBOUND, channel=conv.customer.channel,
                text=handoff_notice(policy, decision.skill, message.at), author=BOT_AUTHOR,
            )
            await effects.once(f"handoff:{message.id}", lambda: self._send(conv, notice), never_found)
        metrics.decision(decision.route.value, decision.reasons)
        if conv.card_ts:  # its card keeps its decision (skill, channel): transfers and escalations rely on it
            if decision.route is RouteKind.HUMAN:
                await handback.to_people(self.desk, conv, decision, effects, message)
        else:
            conv.decision = decision
            conv.skill = decision.skill
            if decision.route is RouteKind.HUMAN:
                await post_card(self, conv, decision, effects, history, suggested_agent(decision, context, policy),
                                      message.at)
        log.info(
            "conversation_routed",
            conversation_id=conv.id,
            route=decision.route.value,
            skill=decision.skill,
            channel=decision.channel,
            priority=decision.priority,
            reasons=decision.reasons,
            policy_version=decision.policy_version,
        )

    async def _try_automation(
        self, conv: Conversation, judged: Conversation, effects: Effects, message: Message,
        answered_on: Scores | None, closing: bool = False,
    ) -> str | None:
        """None when the bot answered; else why it handed over. The bot is shown `judged` (the messages since
        "Back to bot"): it too hands over on any request for a human it is shown, however old."""
        reason = "no automation configured"
        if self.automation is not None and conv.scores is not None:
            reply = await self.automation.handle(judged, conv.scores)
            if reply.answered and reply.text:
                answer = Message(
                    id=f"{BOT_ANSWER}{message.id}", direction=Direction.OUTBOUND, channel=conv.customer.channel,
                    text=reply.text, author=BOT_AUTHOR,
                )
                sent, _ = await effects.once(f"bot:{message.id}", lambda: self._send(conv, answer, answer=True),
                                             never_found)
                if sent == "delivered":
                    conv.state = ConversationState.AUTOMATED
                    if self.bot_followup is not None:
                        await self.bot_followup.answered(conv, closing)
                    return None
                reason = f"bot answer not delivered ({outbound.reason(sent)})"
            else:
                reason = reply.handoff_reason or "automation could not answer"
                if conv.state is not ConversationState.AUTOMATED:  # its first look: this text it cannot answer
                    await publish_unanswerable_once(self.redis, effects, f"auto:{message.id}", conv, reason)
            if conv.state is ConversationState.AUTOMATED:
                await publish_failure_once(self.redis, effects, f"auto:{message.id}", conv, answered_on, reason)
        return reason

    async def _send(self, conv: Conversation, message: Message, answer: bool = False) -> str:
        """`answer`: the bot's answer, which goes in the transcript only once delivered. Written first, an answer
        the channel refused still showed on the card as given, and the SLA read the customer as answered: the
        hand-off that followed planned no deadline, so nothing re-pinged or escalated however long they waited."""
        refused = await guards.refusal(self, conv)
        if refused is not None:
            log.info("customer_delivery_refused", conversation_id=conv.id, reason=refused)
            return refused
        if not answer:
            await self._record(conv, message)
        channel = self.channels.get(conv.customer.channel)
        if channel is None:
            log.warning("customer_channel_missing", conversation_id=conv.id, channel=conv.customer.channel.value)
            # Refused for good: a retry for half an hour cannot configure it; the agent is told at once.
            return f"{REFUSED}no {conv.customer.channel.value} channel configured"
        with metrics.channel_call(conv.customer.channel.value):
            delivery = await channel.send(conv, message)
        if not delivery.ok:
            metrics.channel_failed(conv.customer.channel.value)
            log.warning("customer_delivery_failed", conversation_id=conv.id, error=delivery.error)
            return f"{REFUSED if delivery.permanent else FAILED}{delivery.error}"
        if answer:
            await self._record(conv, message)
        return "delivered"

    async def _record(self, conv: Conversation, message: Message) -> None:
        if not any(m.id == message.id for m in conv.messages):
            await self.store.append(conv, message)

    async def handle_outbound(self, fields: Mapping[str, str], ack: Ack | None = None) -> None:
        await outbound.deliver(self, fields)

    async def requeue(self, fields: dict[str, str]) -> None:
        await outbound.requeue(self, fields)


__all__ = ["Pipeline", "new_id"]
