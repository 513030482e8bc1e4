"""Named checkpoints where the fault-injection tests can freeze a real process before killing it.

Only active when SWITCHBOARD_FAULT_HANG names the checkpoint; a no-op otherwise.
"""

from __future__ import annotations

import asyncio
import os

import structlog

log = structlog.get_logger(__name__)


async def checkpoint(name: str, **context: str) -> None:
    if os.environ.get("SWITCHBOARD_FAULT_HANG") == name:
        log.warning("fault_hang", checkpoint=name, **context)
        await asyncio.Event().wait()
