"""Checks before anything is sent to a customer: a send the channel is bound to refuse is refused here,
at once and with a reason the agent can act on, instead of showing ✅ until the provider reports a failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gateway import optout, reengage
from gateway.domain import ChannelKind, Conversation
from gateway.outbound import REFUSED
from gateway.sla import sla_now
from router.sla import duration

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

WHATSAPP_WINDOW_S = 24 * 3600
"""WhatsApp takes free-form messages only within 24 hours of the customer's last one (Meta's customer service
window; Twilio answers 63016, Meta error 131047). Outside it only pre-approved templates may be sent: an agent's
reply then waits for the customer's answer to one, if a template is configured (`gateway.reengage`)."""


async def whatsapp_window(p: Pipeline, conv: Conversation) -> str | None:
    if conv.customer.channel is not ChannelKind.WHATSAPP:
        return None
    last = reengage.last_heard(conv)
    if last is None:
        return None
    since = sla_now(p.sla) - last
    if since <= WHATSAPP_WINDOW_S:
        return None
    return f"{REFUSED}{reengage.WINDOW_CLOSED} ({duration(since)} ago); only an approved template may be sent now"


GUARDS: tuple[Callable[[Pipeline, Conversation], Awaitable[str | None]], ...] = (optout.refusal, whatsapp_window)


async def refusal(p: Pipeline, conv: Conversation) -> str | None:
    """The first reason nothing may be sent to this customer now, or None."""
    for guard in GUARDS:
        why = await guard(p, conv)
        if why is not None:
            return why
    return None
