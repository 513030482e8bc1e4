"""Outbound provider calls with retries: 5xx, 429 and network errors are retried with back-off.

Shared by the Twilio and WhatsApp senders; 4xx other than 429 means the request itself is wrong
(bad number, expired token), so retrying would only delay the failure the agent needs to see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)


@dataclass
class CallResult:
    ok: bool
    status: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def refused_for_good(status: int | None) -> bool:
    """A 4xx other than 429: the request itself is wrong (bad number, unsubscribed, expired token)."""
    return status is not None and 400 <= status < 500 and status != 429


def _retry_after(resp: aiohttp.ClientResponse, fallback: float) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", "")), 5.0)
    except ValueError:
        return fallback


Landed = Callable[[], Awaitable[str | None]]
"""The provider's id for what an earlier attempt may have created, or None."""


async def post_with_retry(
    session: aiohttp.ClientSession,
    url: str,
    *,
    describe: Callable[[dict[str, Any]], str],
    conversation_id: str,
    attempts: int = 4,
    base_delay: float = 0.2,
    timeout_s: float = 15.0,
    landed: Landed | None = None,
    answered: Callable[[dict[str, Any]], bool] | None = None,
    **request: Any,
) -> CallResult:
    """`landed` is asked before a resend that follows an answer we never got (a timeout, a dropped
    connection, a 5xx): the request may have been taken, and resending would do it twice. `answered` tells a 5xx
    the provider itself wrote (its own error body: it took nothing) from one a proxy wrote in front of it."""
    last = CallResult(ok=False, error="no attempt")
    maybe_taken = False
    for attempt in range(1, attempts + 1):
        delay = base_delay * 2 ** (attempt - 1)
        if maybe_taken and landed is not None and (provider_id := await landed()):
            return CallResult(ok=True, status=200, payload={"sid": provider_id})
        try:
            async with session.post(url, timeout=aiohttp.ClientTimeout(total=timeout_s), **request) as resp:
                try:
                    payload = await resp.json(content_type=None)
                except ValueError:
                    payload = {}
                payload = payload if isinstance(payload, dict) else {}
                if resp.status < 300:
                    return CallResult(ok=True, status=resp.status, payload=payload)
                last = CallResult(ok=False, status=resp.status, payload=payload,
                                  error=f"HTTP {resp.status}: {describe(payload) or resp.reason}")
                if refused_for_good(resp.status):
                    break
                maybe_taken = maybe_taken or (resp.status >= 500 and not (answered and answered(payload)))
                delay = _retry_after(resp, delay)
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            last = CallResult(ok=False, error=f"unreachable: {exc.__class__.__name__}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            maybe_taken = True
            last = CallResult(ok=False, error=f"unreachable: {exc.__class__.__name__}")
        if attempt < attempts:
            log.warning("provider_call_retry", conversation_id=conversation_id, attempt=attempt, error=last.error)
            await asyncio.sleep(delay)
    return last
