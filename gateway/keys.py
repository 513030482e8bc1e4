"""Every Redis key the gateway uses, in one place, so naming stays consistent across processes."""

from __future__ import annotations

PREFIX = "sb:"
INBOUND_GROUP = "workers"


def inbound_stream(partition: int) -> str:
    return f"{PREFIX}in:{partition}"


def partition_of(customer_key: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike `hash()`), so one customer always maps to one partition.

    A plain polynomial hash because the ingest script computes the same inside Redis (Lua has no
    CRC-32, and the stand-in Redis has no sha1hex), which saves a round trip per message.
    """
    h = 0
    for byte in customer_key.encode():
        h = (h * 31 + byte) % 2147483647
    return h % partitions


def dedupe(customer_key: str, message_id: str) -> str:
    """Per customer: integrators' message ids are only unique per customer ("m-1" for everyone). The
    customer key's length goes first: both ids may hold ":", and ("shop:42", "m1") must not be ("shop", "42:m1")."""
    return f"{PREFIX}dedupe:{len(customer_key)}:{customer_key}:{message_id}"


def customer_conversation(customer_key: str) -> str:
    return f"{PREFIX}cust:{customer_key}:conv"


def reply_via(customer_key: str) -> str:
    """Which of our numbers (or WhatsApp senders) the customer last wrote to; replies go out from it."""
    return f"{PREFIX}cust:{customer_key}:via"


def customer(customer_key: str) -> str:
    return f"{PREFIX}cust:{customer_key}"


def conversation(conversation_id: str) -> str:
    return f"{PREFIX}conv:{conversation_id}"


def transcript(conversation_id: str) -> str:
    return f"{PREFIX}conv:{conversation_id}:msgs"


def closed(conversation_id: str) -> str:
    return f"{PREFIX}conv:{conversation_id}:closed"


def conversation_partition(conversation_id: str) -> str:
    """The partition the conversation's messages are queued on (the ingest script writes it)."""
    return f"{PREFIX}conv:{conversation_id}:part"


def effects(conversation_id: str) -> str:
    return f"{PREFIX}conv:{conversation_id}:effects"


def resolves(conversation_id: str) -> str:
    """Where the release before kept the resolve count (now `Conversation.resolves`; `ConversationStore.legacy_resolves`
    still reads and bumps it for that release's processes during a rolling deploy)."""
    return f"{PREFIX}conv:{conversation_id}:resolves"


def lease(partition: int) -> str:
    return f"{PREFIX}lease:{partition}"


WORKERS = f"{PREFIX}workers"
RECENT = f"{PREFIX}recent"
POLICY = f"{PREFIX}policy"
OUTCOMES = f"{PREFIX}outcomes"


def thread(channel_id: str, ts: str) -> str:
    """Card thread -> conversation, so a reply in Slack finds its customer."""
    return f"{PREFIX}thread:{channel_id}:{ts}"


RETIRED = "retired:"
"""Prefix of a `thread` value whose card a transfer retired: replies there reach nobody, and the agent
is told where the conversation went."""


def cards(conversation_id: str) -> str:
    """Every card a conversation has had ("channel|ts"): transfers and escalations leave older ones,
    whose threads hold customer text that an erasure must find."""
    return f"{PREFIX}conv:{conversation_id}:cards"


def claim(conversation_id: str) -> str:
    return f"{PREFIX}conv:{conversation_id}:claim"


def agent_open(user_id: str) -> str:
    return f"{PREFIX}agent:{user_id}:open"


def slack_event(event_id: str) -> str:
    return f"{PREFIX}slack:event:{event_id}"


DEAD = f"{PREFIX}dead"
"""Entries a worker parked after failing for a reason of their own (see `gateway.dead_letters`)."""
AUDIT = f"{PREFIX}audit"


def ident(identity: str) -> str:
    """A verified identity ("email:jane@x.com", "phone:+4917…", "api:cust-42") -> person id."""
    return f"{PREFIX}ident:{identity}"


def person(person_id: str) -> str:
    return f"{PREFIX}person:{person_id}"


def person_conversations(person_id: str) -> str:
    return f"{PREFIX}person:{person_id}:convs"


MERGES = f"{PREFIX}merges"


def held_replies(conversation_id: str) -> str:
    """Agent replies waiting for the customer to reopen WhatsApp's 24-hour window (`gateway.reengage`)."""
    return f"{PREFIX}conv:{conversation_id}:held"


def held_for(customer_key: str) -> str:
    """Which conversation holds replies for this customer: their next message looks here, whichever
    conversation it lands in (`gateway.reengage.release`)."""
    return f"{PREFIX}cust:{customer_key}:held"


def csat_asked(conversation_id: str) -> str:
    """Set while a rating request is unanswered: a lone "5" is a rating only then, and counts once."""
    return f"{PREFIX}csat:asked:{conversation_id}"


def webchat_session(sid: str) -> str:
    """A web chat session record (`integrations.webchat.session`): conversation, visitor id, name and email."""
    return f"{PREFIX}webchat:token:{sid}"


def webchat_sessions(conversation_id: str) -> str:
    """The conversation's live session records (sid → expiry), so an erasure deletes them rather than leaving the
    name and email until they expire."""
    return f"{PREFIX}conv:{conversation_id}:sessions"
