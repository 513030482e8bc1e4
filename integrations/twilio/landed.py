"""Did an earlier attempt of this reply part reach Twilio? Asked before any resend that could double it.

Twilio's Messages API has no idempotency key. A timeout, a dropped connection or a 5xx from a proxy can
come after Twilio has already queued the SMS, and resending then texts the customer twice. So the first
attempt at each part leaves a mark (when it began), and any later attempt of that part, whether the
sender's own retry, the worker's half-hour delivery retries or a worker that died mid-send, first lists
the recent messages to that number from ours and takes one with the same body created since the mark.

A lookup that itself fails answers "not found": the part is sent again, as it was before (at least once
beats a reply lost for good). Two identical texts to one customer within `SKEW_S` of each other, the
second of which timed out, are taken for one.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)

SKEW_S = 5.0
"""Twilio's `date_created` is whole seconds and its clock is not ours."""
PAGE = 50
"""Newest first; an agent's reply is among a customer's last fifty texts well within a retry schedule."""


def created_at(message: dict[str, Any]) -> float | None:
    """Twilio's RFC 2822 `date_created` ("Thu, 05 Dec 2026 03:24:50 +0000") as a Unix time.

    >>> created_at({"date_created": "Sat, 05 Dec 2026 03:24:50 +0000"})
    1796441090.0
    >>> created_at({"date_created": "yesterday"}) is None
    True
    """
    try:
        return parsedate_to_datetime(str(message.get("date_created") or "")).timestamp()
    except (TypeError, ValueError):
        return None


def matching(messages: list[Any], body: str, since: float) -> str | None:
    """The sid of an outbound message with this body created since `since` (less the skew), if any.

    >>> m = {"sid": "SM1", "body": "Refunded", "direction": "outbound-api",
    ...      "date_created": "Sat, 05 Dec 2026 03:24:50 +0000"}
    >>> matching([m], "Refunded", 1796441090.0), matching([m], "Refunded!", 1796441090.0)
    ('SM1', None)
    >>> matching([m], "Refunded", 1796441200.0) is None  # an older text with the same words
    True
    """
    for m in messages:
        if not isinstance(m, dict) or m.get("body") != body:
            continue
        if not str(m.get("direction", "outbound")).startswith("outbound"):
            continue
        created = created_at(m)
        if created is not None and created >= since - SKEW_S and m.get("sid"):
            return str(m["sid"])
    return None


async def find(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], to: str, sender: str, body: str,
    since: float, conversation_id: str, timeout_s: float,
) -> str | None:
    """The sid Twilio gave this part on an earlier attempt, or None (none found, or Twilio did not say)."""
    params = {"To": to, "From": sender, "PageSize": str(PAGE)}
    try:
        async with session.get(url, params=params, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            payload = await resp.json(content_type=None) if resp.status < 300 else None
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("twilio_lookup_failed", conversation_id=conversation_id, error=exc.__class__.__name__)
        return None
    if not isinstance(payload, dict):
        log.warning("twilio_lookup_failed", conversation_id=conversation_id, error=f"HTTP {status}")
        return None
    sid = matching(payload.get("messages") or [], body, since)
    if sid is not None:
        log.info("twilio_send_already_taken", conversation_id=conversation_id, sid=sid)
    return sid
