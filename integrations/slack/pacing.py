"""Per-channel pacing for chat.postMessage.

Slack allows about one message per second per channel with short bursts; beyond that it answers 429.
A burst of escalations into one channel must queue here, in order, instead of failing: a token
bucket per channel with a FIFO lock, so waiting callers go out in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ChannelPacer:
    def __init__(self, rate: float = 1.0, burst: int = 3) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    async def acquire(self, channel: str) -> float:
        """Wait for this channel's turn; returns how long we waited (for metrics and tests)."""
        bucket = self._buckets.setdefault(channel, _Bucket(tokens=float(self.burst), updated=time.monotonic()))
        async with bucket.lock:
            now = time.monotonic()
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            waited = 0.0
            if bucket.tokens < 1.0:
                waited = (1.0 - bucket.tokens) / self.rate
                await asyncio.sleep(waited)
                bucket.tokens = 1.0
                bucket.updated = time.monotonic()
            bucket.tokens -= 1.0
            return waited

    def pause(self, channel: str, seconds: float) -> None:
        """Slack said 429 with Retry-After: no tokens for this channel until then."""
        bucket = self._buckets.setdefault(channel, _Bucket(tokens=0.0, updated=time.monotonic()))
        bucket.tokens = -seconds * self.rate
        bucket.updated = time.monotonic()
