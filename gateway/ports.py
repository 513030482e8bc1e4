"""Protocols at each integration boundary.

The worker talks to Slack, the bot and the customer channels only through these, so each outside
system can be swapped (real Slack or the emulator, built-in bot or an external one) without touching
the pipeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeGuard, runtime_checkable

from pydantic import BaseModel, Field

from gateway.domain import ChannelKind, Conversation, Decision, Message, PastConversation, Scores

OnUndelivered = Callable[[str, str, str], Awaitable[None]]
"""(conversation id, channel name, reason): a reply the provider took and later reported undelivered; its
status webhook calls this so the agent hears of it (`gateway.outbound.report_undelivered`)."""


class CardRef(BaseModel):
    channel: str
    ts: str


class AgentDesk(Protocol):
    """Where humans work conversations (Slack)."""

    async def ensure_channels(self, names: Sequence[str]) -> None: ...

    async def post_card(
        self,
        conversation: Conversation,
        decision: Decision,
        history: Sequence[PastConversation] = (),
        suggested_agent: str | None = None,
        tag: str = "card",
    ) -> CardRef:
        """Post the context card for a conversation (tagged so `find_card` can see it later)."""
        ...

    async def find_card(self, conversation: Conversation, channel: str, since: float, tag: str = "card"
                        ) -> CardRef | None:
        """The card with this tag posted before a crash, so a retried effect does not post a second one."""
        ...

    async def post_in_thread(self, conversation: Conversation, message: Message) -> str:
        """Add a customer follow-up to the card's thread; returns the Slack ts."""
        ...

    async def find_in_thread(self, conversation: Conversation, message_id: str, field: str = "message_id"
                             ) -> str | None:
        """Our post in the card's thread whose metadata has `field` = `message_id` (a follow-up, a note)."""
        ...

    def cut_in_card(self, conversation: Conversation) -> list[Message]:
        """Customer messages its card shows only in part, or not at all: threaded whole after the card."""
        ...

    async def update_card(self, conversation: Conversation, status: str | None) -> None:
        """Re-render the card in place after a state change."""
        ...

    async def retire_card(self, channel: str, ts: str, text: str) -> None:
        """Replace a card that no longer leads anywhere (moved, superseded) with one line, no buttons."""
        ...

    async def mark_message(self, channel: str, ts: str, emoji: str) -> None:
        """React to a Slack message (e.g. delivered ✅)."""
        ...

    async def note_in_thread(self, conversation: Conversation, text: str, broadcast: bool = False,
                             note_id: str | None = None) -> str | None:
        """Post our own status line in the card's thread; `note_id` tags it, for `find_in_thread`."""
        ...


class BotReply(BaseModel):
    """The bot either answers (with a confidence) or hands off with a reason a human can read."""

    answered: bool
    text: str | None = None
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    intent: str | None = None
    handoff_reason: str | None = None


class Automation(Protocol):
    async def handle(self, conversation: Conversation, scores: Scores) -> BotReply: ...


class Delivery(BaseModel):
    ok: bool
    error: str | None = None
    external_id: str | None = None
    permanent: bool = False
    """The provider refused this message for good (a bad or unsubscribed number): retrying for half an hour
    would only delay telling the agent to reach the customer another way."""


@runtime_checkable
class ShowsWaiting(Protocol):
    """A channel that can show the customer how long until a person answers (web chat)."""

    async def waiting(self, conversation: Conversation, minutes: int) -> None: ...


_SHOWS_WAITING: dict[type, bool] = {}


def shows_waiting(channel: object) -> TypeGuard[ShowsWaiting]:
    """`isinstance(channel, ShowsWaiting)`, asked once per channel class: a runtime-checkable Protocol walks the
    class's attributes on every check, and this one ran for every card posted (about 1 % of the worker)."""
    kind = type(channel)
    known = _SHOWS_WAITING.get(kind)
    if known is None:
        known = _SHOWS_WAITING[kind] = isinstance(channel, ShowsWaiting)
    return known


@runtime_checkable
class AsksRating(Protocol):
    """A channel with its own rating prompt; others get a "reply 1 to 5" text."""

    async def ask_rating(self, conversation: Conversation, request_id: str) -> bool: ...


class CustomerChannel(Protocol):
    """Sends a reply back to the customer on the channel they wrote from."""

    kind: ChannelKind

    async def send(self, conversation: Conversation, message: Message) -> Delivery: ...


@runtime_checkable
class SendsTemplate(Protocol):
    """A channel with an approved WhatsApp template: the one message WhatsApp takes outside its 24-hour window,
    sent to invite the customer to answer so held replies can follow (`gateway.reengage`)."""

    def reengages(self, conversation: Conversation) -> bool:
        """Whether a template is configured for this customer's channel (Twilio's sender also serves SMS)."""
        ...

    async def send_template(self, conversation: Conversation, template_id: str) -> Delivery:
        """`template_id`: stable across attempts of the same send, so one the provider took is not sent twice."""
        ...
