"""Compressed request bodies are refused before they are read.

aiohttp inflates a gzip or deflate body as it arrives, on the event loop, whatever the handler does with it: a
1 MB body of zeros that inflates to 1 GB held the web process (every chat socket, the Slack endpoint, and under
`serve` the worker too) for 3-5 s per request, without any signature, even after the 413. No caller of ours
compresses what it sends (Slack, Twilio, Meta, the widget, the signed API), so a body with a `Content-Encoding`
is answered 415 and the connection closed, and the server is started with inflation off (`HANDLER_ARGS`) so what
arrives is never inflated at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

HANDLER_ARGS: dict[str, Any] = {"auto_decompress": False}
"""For `web.Application(handler_args=…)`: bodies are read as sent."""
PLAIN = frozenset({"", "identity"})


@web.middleware
async def refuse_encoded_bodies(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in PLAIN:
        return await handler(request)
    resp = web.json_response(
        {"error": "unsupported_content_encoding", "detail": "send the body uncompressed"}, status=415
    )
    resp.force_close()  # the rest of the body is not read
    return resp
