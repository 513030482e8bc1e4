"""What the worker knows beyond the conversation itself, handed to the pure `decide()`.

Everything time- or load-dependent comes in here (or as `now`) so the router never reads a clock,
Redis or Slack, and a decision can be replayed exactly for audits and policy dry runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from router.capacity import AgentLoad


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """Facts about the customer's history and the desk; all optional so the bare call keeps working.

    `sentiment_history` is per inbound message, oldest first, and should end with the current message.
    `previous_resolved_at` None with a `previous_agent` means that conversation is still open.
    `previous_agent_available` None means "work it out from `agents`".
    """

    sentiment_history: tuple[float, ...] = ()
    previous_agent: str | None = None
    previous_conversation_id: str | None = None
    previous_resolved_at: datetime | None = None
    previous_agent_available: bool | None = None
    reopened: bool = False
    agents: tuple[AgentLoad, ...] = ()
    bot_answers: int = 0
    bot_failed: bool = False
    bot_handoff_reason: str | None = None
    automation: bool = True
    """False where no bot is configured (`SWITCHBOARD_AUTOMATION=off`): nothing can go to automation."""
    handed_back_at: int | None = None
    """An agent handed the conversation back to the bot ("Back to bot"): the index, among its inbound messages,
    of the first one after that. The person who handed it back read everything before, so earlier asks for a
    human, keywords and repeats are not judged again, and their own name is no "returning customer" reason:
    counted, they sent the customer's next message straight back to a person and the bot never saw it."""


EMPTY_CONTEXT = RoutingContext()
