"""Domain model shared by every room.

Kept free of I/O (pydantic only) so that `router/` and `learners/` can import it and stay pure.
The validators here are the first line of defence: anything that reaches a worker has already been
checked for length, emptiness and known channels, so later code can trust its inputs.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

MAX_TEXT = 4000
"""Longest customer message we accept; Slack sections cap at 3000 chars, cards truncate further."""

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[\w.:@+\-=/]+$")
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """80 random bits in 20 hex characters (as before); token_hex skips building a UUID object."""
    return f"{prefix}_{secrets.token_hex(10)}"


class ChannelKind(StrEnum):
    """Where a customer wrote from; the reply goes back the same way."""

    API = "api"
    WEBCHAT = "webchat"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class ConversationState(StrEnum):
    NEW = "new"
    AUTOMATED = "automated"
    WAITING = "waiting"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class RouteKind(StrEnum):
    AUTOMATION = "automation"
    HUMAN = "human"


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ()\-.]{5,20}$")


class DomainModel(BaseModel):
    """Validation errors say where and what, never the input: it is a customer's or an agent's words, and
    those errors reach logs and `sb:dead` (pydantic quotes `input_value=…` by default)."""

    model_config = ConfigDict(hide_input_in_errors=True)


class CustomerProfile(DomainModel):
    """What the customer told us about themselves; unverified, so never used to merge identities."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    tier: str | None = Field(default=None, max_length=40)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.match(v):
            raise ValueError("not a valid email address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and not _PHONE.match(v):
            raise ValueError("not a valid phone number")
        return v


def clean_text(v: str) -> str:
    v = v.replace("\x00", "").strip()
    if not v:
        raise ValueError("text must not be empty")
    return v


class InboundMessage(DomainModel):
    """A customer message as a channel adapter hands it over, before it has a conversation."""

    model_config = ConfigDict(extra="forbid")

    channel: ChannelKind
    customer_id: Identifier
    message_id: Identifier
    text: str = Field(max_length=MAX_TEXT)
    customer: CustomerProfile = Field(default_factory=CustomerProfile)
    received_at: datetime = Field(default_factory=utcnow)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return clean_text(v)

    @property
    def customer_key(self) -> str:
        """Identity of the customer within a channel; partitions and conversations hang on it."""
        return f"{self.channel.value}:{self.customer_id}"

    def identities(self) -> list[str]:
        """Verified identities only, so two people are never merged on what a visitor merely typed.

        The channel's own id always counts. A phone number is verified by the carrier on SMS and
        WhatsApp; on the signed API the integrating system vouches for the email and phone it sends.
        Web chat emails are unverified (only the signed user id counts, and it is the customer_id).
        """
        found = [self.customer_key]
        if self.channel in (ChannelKind.SMS, ChannelKind.WHATSAPP):
            phone = e164(self.customer_id)
            if phone:
                found.append(f"phone:{phone}")
        if self.channel is ChannelKind.API:
            if self.customer.email:
                found.append(f"email:{self.customer.email.lower()}")
            phone = e164(self.customer.phone or "")
            if phone:
                found.append(f"phone:{phone}")
        return found


def e164(raw: str) -> str | None:
    """'+49 (170) 123-4567' -> '+491701234567'; numbers without a country code are not comparable."""
    digits = re.sub(r"[\s().\-]", "", raw.removeprefix("whatsapp:"))
    return digits if re.fullmatch(r"\+[1-9]\d{6,14}", digits) else None


class Message(DomainModel):
    """One line of a transcript, in either direction."""

    id: str
    direction: Direction
    channel: ChannelKind
    text: str = Field(max_length=MAX_TEXT)
    author: str | None = None
    external_id: str | None = None
    at: datetime = Field(default_factory=utcnow)


class Customer(DomainModel):
    key: str
    """The channel identity the customer last wrote from ("sms:+4917…"); replies go there."""
    channel: ChannelKind
    external_id: str
    profile: CustomerProfile = Field(default_factory=CustomerProfile)
    person_id: str | None = None
    """One person across channels (see gateway/identity.py)."""


class PastConversation(DomainModel):
    """An earlier conversation of the same person, as the context card lists it."""

    id: str
    created_at: datetime
    channel: ChannelKind
    skill: str | None = None
    state: ConversationState
    csat: int | None = None
    agent: str | None = None
    resolved_at: datetime | None = None


class Scores(DomainModel):
    """What the learners think of a conversation; every figure says which model version produced it."""

    sentiment: float = Field(ge=-1.0, le=1.0)
    urgency: float = Field(ge=0.0, le=1.0)
    skill: dict[str, float]
    automation_success: float = Field(ge=0.0, le=1.0)
    versions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _skills(self) -> Scores:
        if not self.skill:
            raise ValueError("skill distribution must name at least one skill")
        return self

    @property
    def top_skill(self) -> str:
        return max(sorted(self.skill), key=lambda s: self.skill[s])

    @property
    def skill_confidence(self) -> float:
        return self.skill[self.top_skill]


class Decision(DomainModel):
    """Where a conversation goes and why; the reasons are shown on the card and kept for audit."""

    route: RouteKind
    skill: str
    channel: str | None = None
    priority: int = Field(ge=1, le=4, description="1 = most urgent")
    reasons: list[str] = Field(min_length=1)
    policy_version: int = 0

    @model_validator(mode="after")
    def _human_has_channel(self) -> Decision:
        if self.route is RouteKind.HUMAN and not self.channel:
            raise ValueError("a human route needs a Slack channel")
        return self


class Conversation(DomainModel):
    """A customer's thread of messages and everything the desk needs to act on it."""

    id: str
    customer: Customer
    state: ConversationState = ConversationState.NEW
    messages: list[Message] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    skill: str | None = None
    slack_channel: str | None = None
    card_ts: str | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    """When `claimed_by` took it; read only while `claimed_by` is set."""
    requeued_at: datetime | None = None
    """When the SLA ladder last reassigned it back to the queue; read only while unclaimed.
    The queue's ladder counts from here: counting from the customer's first message escalated a
    conversation at the next tick after it had just been put back for another agent to take."""
    agent: str | None = None
    """The last agent who claimed it; kept after resolution so a returning customer can go back to them."""
    csat: int | None = Field(default=None, ge=1, le=5)
    scores: Scores | None = None
    decision: Decision | None = None
    replied_at: datetime | None = None
    """When a person last replied in the card's thread, as soon as they did: the reply reaches the
    transcript only once the worker has delivered it, and an SLA step read in between took the
    conversation away from the agent who had just answered."""
    moving_ref: str | None = None
    """The queued transfer moving the card to `skill`'s channel, until the worker posts the new card there:
    a second click on Transfer in between is told so instead of queuing the move (and its outcome) twice,
    and a parked move clears only its own ref, not a later one's."""
    partition: int | None = None
    """The stream partition its messages are queued on, fixed when it starts: desk work (replies, transfers)
    goes there too, so one worker handles it in order. Derived from the person, it split across two
    partitions once the person was merged into another (new messages followed the new person)."""
    taught_skill: str | None = None
    """The skill the last transfer taught the learners (its outcome says "misrouted: really <skill>"); a
    resolve that confirms it says so, and the learners do not learn the same label twice."""
    resolves: int | None = None
    """How many times it was resolved, by people or the bot (None: never). A Resolve form carries the count
    it was opened at: the state alone cannot tell a form opened before a resolve and the customer's reopen
    (the state is back where it was) from one opened after, and the stale one closed the new question.
    Kept in the conversation, guarded by `save_if`, so the check and the resolve are one step."""
    version: int = 0

    @property
    def inbound(self) -> list[Message]:
        return [m for m in self.messages if m.direction is Direction.INBOUND]

    @property
    def last_inbound_text(self) -> str:
        inbound = self.inbound
        return inbound[-1].text if inbound else ""


BOT_AUTHOR = "Switchboard bot"
BOT_ANSWER = "bot-"
"""Id prefix of the bot's answers; its other lines (a hand-off notice, say) answer nothing."""


AGENT_REPLY = "out-"
"""Id prefix of what an agent wrote in the card's thread; our own notices ("resolved", "thank you for your
rating") carry other prefixes, so they never pass for a first response."""
NOTICE = "notice-"


def is_human_reply(m: Message) -> bool:
    return m.direction is Direction.OUTBOUND and m.author != BOT_AUTHOR


def is_bot_answer(m: Message) -> bool:
    return m.direction is Direction.OUTBOUND and m.author == BOT_AUTHOR and m.id.startswith(BOT_ANSWER)


def ends_wait(m: Message) -> bool:
    """Whether the customer's next message starts a new wait: a person replied, or the bot answered.

    Its hand-off notice ("a person will reply within …") does not: counting it reset the SLA steps
    already fired, and a customer's "hello??" after an escalation escalated a second time."""
    return is_human_reply(m) or is_bot_answer(m)


class Outcome(DomainModel):
    """What really happened, as an agent (or the bot) confirmed it; the learners' ground truth."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    kind: str = Field(pattern=r"^(resolved|transferred|automation_resolved|automation_handoff|correction)$")
    text: str = ""
    final_skill: str | None = None
    urgency: float | None = Field(default=None, ge=0.0, le=1.0)
    mood: str | None = Field(default=None, pattern=r"^(negative|neutral|positive)$")
    csat: int | None = Field(default=None, ge=1, le=5)
    automation_failed: bool | None = None
    correction: str | None = None
    agent: str | None = None
    predicted: dict[str, Any] = Field(default_factory=dict)
    skill_taught: bool = False
    """`final_skill` is not learned from this outcome, only counted in stats: a transfer's (the resolve teaches
    the skill the conversation ends on), or one an earlier release taught with its transfer."""
    at: datetime = Field(default_factory=utcnow)
