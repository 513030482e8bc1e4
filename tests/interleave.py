"""Two actors at once, deterministically: another actor's step lands right after the code under test has read.

The store the code under test uses is the real one, wrapped: every call goes through, and `load` runs `act` just
after its read, so the code goes on with what it read while the stored conversation has moved on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.domain import Conversation

Act = Callable[[str, "Conversation | None"], Awaitable[None]]


@dataclasses.dataclass
class AfterRead:
    """The real store; `act(conversation_id, what was read)` runs after the first read (or after each, `every`)."""

    inner: Any
    act: Act
    every: bool = False
    done: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, conversation_id: str) -> Conversation | None:
        conv: Conversation | None = await self.inner.load(conversation_id)
        if self.every or not self.done:
            self.done = True
            await self.act(conversation_id, conv)
        return conv
