"""Customer traffic for fault scenarios: many customers in parallel, each writing several messages in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.faults.cluster import Cluster

TEXTS = (
    "I was charged twice on my invoice, please refund",
    "also the app shows an error when I log in",
    "and where is my parcel? tracking says nothing",
)


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)
    """external message_id → conversation_id, for every message the API acknowledged."""
    attempts: int = 0
    duplicates_flagged: int = 0


async def run_load(
    cluster: Cluster, customers: int, per_customer: int, tag: str,
    on_accepted: Callable[[int], Awaitable[None]] | None = None, pause: float = 0.0,
) -> LoadResult:
    """Every message is retried until accepted (as a real API client must); returns what was acknowledged."""
    result = LoadResult()

    async def customer(i: int) -> None:
        for j in range(per_customer):
            mid = f"{tag}-c{i}-m{j}"
            body, attempts = await cluster.post_until_accepted(f"{tag}-cust-{i}", mid, TEXTS[j % len(TEXTS)])
            result.accepted[mid] = body["conversation_id"]
            result.attempts += attempts
            result.duplicates_flagged += bool(body["duplicate"])
            if on_accepted is not None:
                await on_accepted(len(result.accepted))
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(customer(i) for i in range(customers)))
    return result
