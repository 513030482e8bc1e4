"""Bolt listeners for the desk: buttons, the resolve modal, and thread replies.

Each listener acks first (Slack wants an answer within 3 s) and then calls `DeskOps`; anything that
must reach a customer is queued on the conversation's stream partition, so a crash after the ack
loses nothing and the worker keeps per-conversation order.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gateway import csat, keys
from gateway.desk_ops import ALREADY_RESOLVED, DeskOps, Result
from gateway.domain import ChannelKind, Conversation, ConversationState
from gateway.ports import AsksRating, CustomerChannel
from gateway.redis_conn import as_str
from gateway.store import ConversationStore
from integrations.slack import modals, replies
from integrations.slack.commands.roster import Roster
from integrations.slack.desk import SlackDesk
from integrations.slack.replies import reply_fields

log = structlog.get_logger(__name__)

EVENT_DEDUPE_S = 3600
GROUP_CACHE_S = 300.0
USER_CACHE_S = 86400
@dataclass
class DeskContext:
    redis: aioredis.Redis
    store: ConversationStore
    ops: DeskOps
    desk: SlackDesk
    agents: frozenset[str]
    note_prefix: str = "note:"
    leads: frozenset[str] = frozenset()
    channels: Mapping[ChannelKind, CustomerChannel] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    _roster: Roster = field(default_factory=lambda: Roster(GROUP_CACHE_S))

    async def is_agent(self, user: str, client: AsyncWebClient) -> bool:
        """Allowed if listed, or a member of a listed user group (S…, looked up and cached 5 min), or a lead.

        Leads are agents, as the commands already held: the SLA ladder sends overdue cards to the leads'
        channel, and a lead missing from `SWITCHBOARD_AGENTS` could neither claim them nor answer the customer."""
        if not self.agents or (await self._roster.find(user, self.agents, client)).member:
            return True
        return bool(self.leads) and (await self._roster.find(user, self.leads, client)).member

    async def display_name(self, client: AsyncWebClient, user: str) -> str:
        """What the customer sees as the agent's name: a configured alias, else their Slack display name
        (cached; Slack's users.info is rate-limited)."""
        if user in self.aliases:
            return self.aliases[user]
        key = _user_key(user)
        cached = await self.redis.get(key)
        if cached:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        resp = await client.users_info(user=user)
        u = resp.get("user") or {}
        profile = u.get("profile") or {}
        name = profile.get("display_name") or u.get("real_name") or u.get("name") or "Support"
        await self.redis.set(key, name, ex=USER_CACHE_S)
        return str(name)

    async def known_names(self, users: list[str]) -> dict[str, str]:
        """What to call the colleagues a reply mentions, where that is cheap: an alias, or a display name
        already cached. users.info is rate-limited and a mention is not worth a look-up; the customer reads
        the reply without an unknown one rather than wait for it."""
        names = {u: self.aliases[u] for u in users if u in self.aliases}
        missing = [u for u in dict.fromkeys(users) if u not in names]
        if missing:
            cached = await self.redis.mget([_user_key(u) for u in missing])
            names |= {u: as_str(v) for u, v in zip(missing, cached, strict=True) if v}
        return names


def _user_key(user: str) -> str:
    return f"{keys.PREFIX}slack:user:{user}"


def _clock() -> str:
    return datetime.now(UTC).strftime("%H:%M UTC")


async def _refuse(client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    await _tell(client, channel, (body.get("user") or {}).get("id"), text)


async def _tell(client: AsyncWebClient, channel: str | None, user: str | None, text: str) -> None:
    if channel and user:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as exc:  # the refusal itself is logged; a failed notice must not 500
            log.warning("ephemeral_failed", user=user, error=exc.response.get("error"))


def _rating_request(conv: Conversation) -> str:
    """One id per resolve: a retry of this resolve asks once, while the next resolve of a reopened conversation
    asks again (one id per conversation was swallowed by the web chat's 30-day dedupe, so the widget never
    showed the second prompt while the rating was marked as asked)."""
    at = conv.resolved_at.strftime("%Y%m%dT%H%M%S%f") if conv.resolved_at else str(conv.version)
    return f"resolve-{conv.id}-{at}"


Handler = Callable[[DeskContext, str, str, dict[str, Any], AsyncWebClient], Awaitable[None]]


async def _claim(ctx: DeskContext, conv_id: str, user: str, body: dict[str, Any], client: AsyncWebClient) -> None:
    result = await ctx.ops.claim(conv_id, user)
    await _after(ctx, result, body, client, f"✋ Claimed by <@{user}> · {_clock()}")


async def _release(ctx: DeskContext, conv_id: str, user: str, body: dict[str, Any], client: AsyncWebClient) -> None:
    result = await ctx.ops.release(conv_id, user)
    await _after(ctx, result, body, client, f"↩️ Released by <@{user}> · {_clock()}: back in the queue")


async def _to_bot(ctx: DeskContext, conv_id: str, user: str, body: dict[str, Any], client: AsyncWebClient) -> None:
    result = await ctx.ops.to_bot(conv_id, user)
    await _after(ctx, result, body, client, f"🤖 Handed back to the bot by <@{user}> · {_clock()}")


async def _resolve_open(
    ctx: DeskContext, conv_id: str, user: str, body: dict[str, Any], client: AsyncWebClient
) -> None:
    conv = await ctx.store.load(conv_id)
    if conv is None or conv.state is ConversationState.RESOLVED:
        await _refuse(client, body, "That conversation no longer exists." if conv is None else ALREADY_RESOLVED)
        return
    view = modals.resolve_view(conv, await ctx.desk.skills(), await ctx.store.resolve_count(conv))
    await client.views_open(trigger_id=body["trigger_id"], view=view)


async def _after(
    ctx: DeskContext, result: Result, body: dict[str, Any], client: AsyncWebClient, status: str
) -> None:
    if not result.ok or result.conversation is None:
        await _refuse(client, body, result.message)
        return
    # Read again: a transfer or escalation may have moved the card since the action read it, and
    # redrawing the old one would give a retired card its buttons back.
    conv = await ctx.store.load(result.conversation.id) or result.conversation
    await ctx.desk.update_card(conv, status)


async def _redraw_earlier(ctx: DeskContext, conv: Conversation, status: str) -> None:
    """The card an escalation moved on from keeps its buttons, so it can still be worked; resolved on the new
    card, it still read "Escalated" with a green Claim that answered "already resolved". Transferred-away cards
    are retired (their thread index says so) and stay so."""
    refs = sorted(as_str(r) for r in await ctx.redis.smembers(keys.cards(conv.id)))
    earlier = [tuple(r.split("|", 1)) for r in refs if r != f"{conv.slack_channel}|{conv.card_ts}" and "|" in r]
    if not earlier:
        return
    owners = await ctx.redis.mget([keys.thread(ch, ts) for ch, ts in earlier])
    for (ch, ts), owner in zip(earlier, owners, strict=True):
        if owner is None or as_str(owner) != conv.id:  # retired, or erased
            continue
        try:
            await ctx.desk.update_card(conv.model_copy(update={"slack_channel": ch, "card_ts": ts}), status)
        except SlackApiError as exc:  # deleted by someone in Slack: nothing left to mislead
            log.warning("earlier_card_not_redrawn", conversation_id=conv.id, ts=ts, error=exc.response.get("error"))


BUTTONS: dict[str, Handler] = {
    "sb_claim": _claim,
    "sb_release": _release,
    "sb_to_bot": _to_bot,
    "sb_resolve": _resolve_open,
}


def register(bolt: AsyncApp, ctx: DeskContext) -> None:
    @bolt.middleware
    async def dedupe_retries(body: dict[str, Any], next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse | None:
        """Slack re-sends events it thinks we missed (X-Slack-Retry-Num); bolt does not filter them.

        The marker is set before the listener runs, so a retry arriving meanwhile is not handled twice; a
        thread reply that then fails before it is queued deletes it (`replies.relay`), so a later retry of
        that event is handled rather than taken for a duplicate of a reply that never got through."""
        event_id = body.get("event_id")
        if event_id and not await ctx.redis.set(keys.slack_event(str(event_id)), 1, nx=True, ex=EVENT_DEDUPE_S):
            log.info("slack_event_duplicate", event_id=event_id)
            return BoltResponse(status=200, body="")
        return await next()

    for action_id, handler in BUTTONS.items():
        bolt.action(action_id)(_button(ctx, handler))

    @bolt.action("sb_transfer")
    async def transfer(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user = body["user"]["id"]
        if not await ctx.is_agent(user, client):
            await _refuse(client, body, "Only support agents can transfer conversations.")
            return
        conv_id, skill = body["actions"][0]["selected_option"]["value"].split("|", 1)
        await _transfer(ctx, conv_id, user, skill, body, client)

    @bolt.view("sb_resolve")
    async def resolve_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                             client: AsyncWebClient) -> None:
        user = body["user"]["id"]
        form, errors = modals.parse_resolve(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        # Answered in the form while it is still open; `resolve` checks again, for a change in between.
        stale = await ctx.ops.resolve_refusal(form.conversation_id, form.resolves)
        if stale:
            await ack(response_action="errors", errors={"skill": stale})
            return
        await ack()
        if not await ctx.is_agent(user, client):
            return
        # The customer's side first: the notice is queued with the resolve itself, then the rating asked, and
        # only then the cards redrawn (cosmetic, for agents). After a refused redraw nothing of that happened.
        before = await ctx.store.load(form.conversation_id)
        channel = ctx.channels.get(before.customer.channel) if before else None
        in_widget = form.ask_csat and isinstance(channel, AsksRating)
        text = "Your conversation has been resolved. Reply any time if you need more help."
        if form.ask_csat and not in_widget:
            text += " How did we do? Reply with a number from 1 (poor) to 5 (great)."
        notice = reply_fields(text, "Support", f"resolve-{form.conversation_id}-{int(time.time())}", kind="notify")
        result = await ctx.ops.resolve(form.conversation_id, user, skill=form.skill, urgency=form.urgency,
                                       mood=form.mood, note=form.note, csat=None, seen_resolves=form.resolves,
                                       notify=notice)
        if not result.ok or result.conversation is None:
            # The form has closed: a view submission has no channel of its own, the card's is where they look.
            current = await ctx.store.load(form.conversation_id) or result.conversation
            await _tell(client, current.slack_channel if current else None, user, result.message)
            return
        request = _rating_request(result.conversation)
        conv = await ctx.store.load(form.conversation_id) or result.conversation  # the card may have moved
        if form.ask_csat:  # a rating counts only while one is asked for, and once
            await csat.ask(ctx.redis, conv.id, request)
        if in_widget and isinstance(channel, AsksRating):
            await channel.ask_rating(conv, request)
        resolved = f"✅ Resolved by <@{user}> · {_clock()} · {form.skill}"
        try:
            await ctx.desk.update_card(conv, resolved)
        except SlackApiError as exc:  # the customer was told; the card says so once Slack takes a redraw again
            log.warning("resolved_card_not_redrawn", conversation_id=conv.id, error=exc.response.get("error"))
        await _redraw_earlier(ctx, conv, resolved)

    @bolt.event("message")
    async def thread_reply(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        await replies.relay(ctx, event, body, client)


def _button(ctx: DeskContext, handler: Handler) -> Callable[..., Awaitable[None]]:
    async def listener(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user = body["user"]["id"]
        conv_id = body["actions"][0]["value"]
        if not await ctx.is_agent(user, client):
            log.warning("desk_action_refused", user=user, conversation_id=conv_id, reason="not an agent")
            await _refuse(client, body, "Only support agents can work conversations.")
            return
        await handler(ctx, conv_id, user, body, client)

    return listener


async def _transfer(ctx: DeskContext, conv_id: str, user: str, skill: str, body: dict[str, Any],
                    client: AsyncWebClient) -> None:
    """The worker moves the card (`gateway.transfers`), in order with the customer's messages."""
    result = await ctx.ops.transfer(conv_id, user, skill)
    if not result.ok:
        await _refuse(client, body, result.message)
    elif result.conversation is not None and result.conversation.moving_ref is None:
        # A pending move taken back: no new card will retire this one, so it is redrawn here (unclaimed).
        await _after(ctx, result, body, client, f"↩️ Kept with {skill} by <@{user}> · {_clock()}")
