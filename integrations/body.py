"""Reading a request body whole, with a limit: shared by every inbound HTTP endpoint.

`request.content.read(n)` returns what has arrived so far, not n bytes: a signed body that came in two
TCP segments was verified on its first part and refused with 401, and the sender rarely retries a 4xx.
"""

from __future__ import annotations

from aiohttp import web

CHUNK = 64 * 1024


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None once it is past `limit` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
