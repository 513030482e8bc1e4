"""Outbound provider calls with retries: 5xx, 429 and network errors are retried with back-off.

Shared by the Twilio and WhatsApp senders; 4xx other than 429 means the request itself is wrong
(bad number, expired token), so retrying would only delay the failure the agent needs to see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


async def post_with_retry(
    session: aiohttp.ClientSession,
    url: str,
    *,
    describe: Callable[[dict[str, Any]], str],
    conversation_id: str,
    attempts: int = 4,
    base_delay: float = 0.2,
    **request: Any,
) -> CallResult:
    last = CallResult(ok=False, error="no attempt")
    for attempt in range(1, attempts + 1):
        delay = base_delay * 2 ** (attempt - 1)
        try:
            async with session.post(url, timeout=aiohttp.ClientTimeout(total=15), **request) as resp:
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
                delay = _retry_after(resp, delay)
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = CallResult(ok=False, error=f"unreachable: {exc.__class__.__name__}")
        if attempt < attempts:
            log.warning("provider_call_retry", conversation_id=conversation_id, attempt=attempt, error=last.error)
            await asyncio.sleep(delay)
    return last
