"""`SlackDesk`: the `AgentDesk` on Slack's Web API (or the emulator, which speaks the same API)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from gateway import metrics
from gateway.domain import MAX_TEXT, Conversation, Decision, Direction, Message, PastConversation
from gateway.ports import CardRef
from integrations.slack.card import ContextCard, fits_whole
from integrations.slack.card import transcript as card_transcript
from integrations.slack.escape import quote
from integrations.slack.pacing import ChannelPacer
from integrations.slack.poster import CardPoster

log = structlog.get_logger(__name__)

SDK_LOGGER = logging.getLogger("slack_sdk.web.switchboard")
"""slack_sdk decides whether to build its debug line, which holds the whole request (a card's blocks),
from its logger's *own* level, not the effective one; a logger left at NOTSET builds it on every call
and then drops it: about 35 µs of the ~300 µs of client CPU a chat.postMessage cost (measured against the
emulator: 301 → 267 µs; the same post through bare aiohttp costs ~190 µs)."""


SLACK_TIMEOUT_S = 10


def slack_session(timeout_s: float = SLACK_TIMEOUT_S) -> aiohttp.ClientSession:
    """The session Slack calls share, with the time limit slack_sdk's own `timeout` would have given them."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5, timeout_s)))


def make_client(
    token: str, base_url: str | None = None, retries: bool = True, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """A client that rides out brief outages and 429s, or (`retries=False`) one that never resends.

    Passing `retry_handlers` replaces slack_sdk's default (connection errors only), so every handler
    we want is listed explicitly. Posting must not resend on its own: chat.postMessage has no
    idempotency key, so a resend after a timeout can make a second card; our effect markers look the
    first one up instead, and the pacer handles 429s.

    Give it a long-lived `session` (`slack_session`): without one slack_sdk opens a new session, and so a
    new TCP connection, for every call (a tenth of the worker's CPU per card, and as much again in Slack's
    front end or the emulator). slack_sdk applies its `timeout` only to sessions it opens itself, so the
    session must carry it: on aiohttp's default (300 s) a Slack that took a connection and never answered
    held a partition, and a SIGTERM, for five minutes per call.
    """
    SDK_LOGGER.setLevel(SDK_LOGGER.getEffectiveLevel())  # what stdlib logging would show, set explicitly
    kwargs: dict[str, Any] = {"token": token, "timeout": SLACK_TIMEOUT_S, "session": session, "logger": SDK_LOGGER}
    if base_url:
        kwargs["base_url"] = base_url
    handlers: list[Any] = []
    if retries:
        handlers = [
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=3),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        ]
    return AsyncWebClient(**kwargs, retry_handlers=handlers)


class SkillSource(Protocol):
    """`PolicyStore.skills`: all skills on offer, or with a conversation those of the arm that routed it."""

    def __call__(self, conversation_id: str | None = None) -> Awaitable[Sequence[str]]: ...


GONE = frozenset({"message_not_found", "channel_not_found", "is_archived", "cant_update_message"})
"""chat.update errors that mean the message will never be there to update."""


class SlackDesk:
    def __init__(
        self,
        client: AsyncWebClient,
        create_missing: bool = False,
        skills: SkillSource | None = None,
        pacer: ChannelPacer | None = None,
    ) -> None:
        """`skills`: the skills cards offer to transfer to, asked each time a card is drawn (the live policy's, or
        the arm's that routed the card: a lead adds skills from Slack while the desk runs)."""
        self.client = client
        self.create_missing = create_missing
        self._skills = skills
        self.pacer = pacer or ChannelPacer()
        # Posting has its own path without slack_sdk's 429 retry: a 429 must pause the whole channel
        # in the pacer, not just the one request that happened to get it.
        self.poster = CardPoster(client)
        self._ids: dict[str, str] = {}

    async def _post(self, **kwargs: Any) -> Any:
        """Every chat.postMessage goes through the channel's pacer; a 429 pauses that channel."""
        channel = str(kwargs["channel"])
        while True:
            await self.pacer.acquire(channel)
            try:
                with metrics.slack_call("chat.postMessage"):
                    return await self.poster.chat_postMessage(**kwargs)
            except SlackApiError as exc:
                if exc.response.status_code != 429:
                    raise
                retry_after = float(exc.response.headers.get("Retry-After", 1) or 1)
                log.warning("slack_rate_limited", channel=channel, retry_after=retry_after)
                self.pacer.pause(channel, retry_after)

    async def _refresh(self) -> None:
        cursor: str | None = None
        while True:
            resp = await self.client.conversations_list(
                limit=200, cursor=cursor, types="public_channel,private_channel", exclude_archived=True
            )
            channels: list[dict[str, Any]] = resp.get("channels", [])
            for ch in channels:
                self._ids[ch["name"]] = ch["id"]
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    async def ensure_channels(self, names: Sequence[str]) -> None:
        await self._refresh()
        for name in names:
            if name in self._ids:
                continue
            if not self.create_missing:
                log.error("slack_channel_missing", channel=name, hint="create it and invite the bot")
                continue
            resp = await self.client.conversations_create(name=name)
            self._ids[name] = resp["channel"]["id"]

    async def channel_id(self, name: str) -> str:
        if name not in self._ids:
            await self.ensure_channels([name])
        return self._ids.get(name, name)

    async def post_card(
        self,
        conversation: Conversation,
        decision: Decision,
        history: Sequence[PastConversation] = (),
        suggested_agent: str | None = None,
        tag: str = "card",
    ) -> CardRef:
        card = await self.card(conversation, decision, history, suggested=suggested_agent)
        channel = await self.channel_id(decision.channel or "")
        resp = await self._post(
            channel=channel,
            text=card.fallback_text(),
            blocks=card.to_dicts(),
            metadata=card.metadata(tag),
            unfurl_links=False,
            unfurl_media=False,
        )
        log.info("card_posted", conversation_id=conversation.id, channel=decision.channel, ts=resp["ts"])
        return CardRef(channel=resp["channel"], ts=resp["ts"])

    async def skills(self, conversation_id: str | None = None) -> tuple[str, ...]:
        """The live skills, or with a conversation those of the policy arm that routed it."""
        if self._skills is None:
            return ()
        return tuple(await (self._skills(conversation_id) if conversation_id else self._skills()))

    async def card(
        self,
        conversation: Conversation,
        decision: Decision,
        history: Sequence[PastConversation] = (),
        status: str | None = None,
        suggested: str | None = None,
    ) -> ContextCard:
        assert conversation.scores is not None, "score before rendering a card"
        return ContextCard(conversation, decision, conversation.scores, list(history), status,
                           await self.skills(conversation.id),
                           suggested)

    async def update_card(self, conversation: Conversation, status: str | None) -> None:
        """Re-render the card in place (claimed, released, resolved...)."""
        if not (conversation.slack_channel and conversation.card_ts and conversation.decision):
            return
        card = await self.card(conversation, conversation.decision, status=status)
        with metrics.slack_call("chat.update"):
            await self.client.chat_update(
                channel=conversation.slack_channel, ts=conversation.card_ts, text=card.fallback_text(),
                blocks=card.to_dicts(),
            )

    async def retire_card(self, channel: str, ts: str, text: str) -> None:
        """Our own line (never customer text) in place of the card: its buttons would act on a card that
        no longer leads the conversation, and replies in its thread would reach nobody."""
        try:
            with metrics.slack_call("chat.update"):
                await self.client.chat_update(
                    channel=channel, ts=ts, text=text,
                    blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                )
        except SlackApiError as exc:
            # Gone already (deleted in Slack, or its channel archived): nothing is left to retire, and
            # retrying would hold up every customer queued behind it on the partition.
            if exc.response.get("error") not in GONE:
                raise
            log.warning("card_already_gone", channel=channel, ts=ts, error=exc.response.get("error"))

    async def note_in_thread(self, conversation: Conversation, text: str, broadcast: bool = False,
                             note_id: str | None = None) -> str | None:
        """Our own line in the card's thread (never customer text)."""
        if not (conversation.slack_channel and conversation.card_ts):
            return None
        tagged = {"metadata": {"event_type": "switchboard_note",
                               "event_payload": {"conversation_id": conversation.id, "note_id": note_id}}}
        resp = await self._post(
            channel=conversation.slack_channel, thread_ts=conversation.card_ts, text=text,
            reply_broadcast=broadcast, **(tagged if note_id else {}),
        )
        return str(resp["ts"])

    async def mark_message(self, channel: str, ts: str, emoji: str) -> None:
        try:
            await self.client.reactions_add(channel=channel, timestamp=ts, name=emoji)
        except SlackApiError as exc:
            if exc.response.get("error") != "already_reacted":
                raise

    async def find_card(self, conversation: Conversation, channel: str, since: float, tag: str = "card"
                        ) -> CardRef | None:
        channel_id = await self.channel_id(channel)
        resp = await self.client.conversations_history(
            channel=channel_id, oldest=f"{since - 5:.6f}", include_all_metadata=True, limit=200
        )
        messages: list[dict[str, Any]] = resp.get("messages", [])
        for msg in messages:
            payload = (msg.get("metadata") or {}).get("event_payload") or {}
            if payload.get("conversation_id") == conversation.id and payload.get("tag", "card") == tag and (
                msg.get("metadata", {}).get("event_type") == "switchboard_card"
            ):
                return CardRef(channel=channel_id, ts=msg["ts"])
        return None

    async def cards_between(self, conversation_id: str, channel: str, oldest: float, latest: float) -> list[CardRef]:
        """Every card of the conversation posted in `channel` in that window, whatever its tag (all pages).

        For erasure: the index of a conversation's cards misses those from before it existed and one an
        escalation posted just before a crash, so the channel itself is read over the conversation's life."""
        if channel not in self._ids and channel not in self._ids.values():
            await self._refresh()  # created since we last listed them (never created here: no cards there)
        channel_id = self._ids.get(channel, channel)
        found: list[CardRef] = []
        cursor = ""
        while True:
            try:
                resp = await self.client.conversations_history(
                    channel=channel_id, oldest=f"{oldest:.6f}", latest=f"{latest:.6f}", include_all_metadata=True,
                    limit=999, cursor=cursor or None,
                )
            except SlackApiError as exc:
                if exc.response.get("error") in ("channel_not_found", "not_in_channel"):
                    return found
                raise
            messages: list[dict[str, Any]] = resp.get("messages", [])
            for msg in messages:
                meta = msg.get("metadata") or {}
                if meta.get("event_type") == "switchboard_card" and (
                    (meta.get("event_payload") or {}).get("conversation_id") == conversation_id
                ):
                    found.append(CardRef(channel=channel_id, ts=msg["ts"]))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor:
                return found

    async def post_in_thread(self, conversation: Conversation, message: Message) -> str:
        if not (conversation.slack_channel and conversation.card_ts):
            raise ValueError("conversation has no card to thread under")
        resp = await self._post(
            channel=conversation.slack_channel,
            thread_ts=conversation.card_ts,
            # Whole (Slack shows up to 40,000): cut here, the end of a long message was nowhere to be read.
            text=f"*Customer* ({message.channel.value}):\n{quote(message.text, MAX_TEXT)}",
            metadata={
                "event_type": "switchboard_message",
                "event_payload": {"conversation_id": conversation.id, "message_id": message.id},
            },
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(resp["ts"])

    def cut_in_card(self, conversation: Conversation) -> list[Message]:
        if fits_whole(conversation):
            return []
        return [m for m in card_transcript(conversation)[1] if m.direction is Direction.INBOUND]

    async def find_in_thread(self, conversation: Conversation, message_id: str, field: str = "message_id"
                             ) -> str | None:
        if not (conversation.slack_channel and conversation.card_ts):
            return None
        resp = await self.client.conversations_replies(
            channel=conversation.slack_channel, ts=conversation.card_ts, include_all_metadata=True, limit=200
        )
        replies: list[dict[str, Any]] = resp.get("messages", [])
        for msg in replies:
            payload = (msg.get("metadata") or {}).get("event_payload") or {}
            if payload.get(field) == message_id:
                return str(msg["ts"])
        return None
