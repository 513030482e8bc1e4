"""Which event loop runs our processes.

uvloop where it is installed: in the routing worker the asyncio loop itself (callbacks, timers, socket
reads) is about a third of the CPU per card, and uvloop's libuv loop does the same work in C.
`SWITCHBOARD_EVENT_LOOP=asyncio` keeps the standard loop (for debugging, or a platform uvloop lacks).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _wanted(choice: str | None) -> bool:
    """`choice` comes from validated settings; the standalone emulator reads the variable itself."""
    return (choice or os.environ.get("SWITCHBOARD_EVENT_LOOP", "uvloop")).strip().lower() != "asyncio"


def new_event_loop(choice: str | None = None) -> asyncio.AbstractEventLoop:
    if _wanted(choice):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """`asyncio.run` on the loop chosen above."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(choice)) as runner:
        return runner.run(main)
