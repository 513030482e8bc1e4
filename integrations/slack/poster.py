"""`CardPoster`: chat.postMessage on the shared session, without slack_sdk's per-call machinery.

Every routed message costs one chat.postMessage, so its client cost is paid a thousand times a second at
the throughput #8 asks for. Through `AsyncWebClient` it cost ~270 µs of worker CPU against the emulator:
argument objects, a retry-state loop (with no handlers: posting must never resend on its own), stdlib
`json` for a card of ~40 blocks, and a response object built twice. This does the one POST itself and
hands the answer to slack_sdk's own `AsyncSlackResponse.validate`, so callers see exactly what the
client raised before: `SlackApiError` with `.response.status_code`, `.headers` and `["error"]`.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

JSON = "application/json;charset=utf-8"


class CardPoster:
    """Posts with `client`'s token, base URL and session (read on every call: OAuth installs a token later)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    @property
    def token(self) -> str | None:
        return self.client.token

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self.client.session

    async def chat_postMessage(self, **kwargs: Any) -> AsyncSlackResponse:  # slack_sdk's name, so callers are unchanged
        session = self.client.session
        if session is None or session.closed:  # no shared session (scripts): slack_sdk opens one per call,
            bare = AsyncWebClient(token=self.client.token, base_url=self.client.base_url,  # and never resends
                                  timeout=self.client.timeout, retry_handlers=[])
            return await bare.chat_postMessage(**kwargs)
        url = f"{self.client.base_url}chat.postMessage"
        headers = {"Content-Type": JSON, "Authorization": f"Bearer {self.client.token}"}
        async with session.post(url, data=orjson.dumps(kwargs), headers=headers) as res:
            raw = await res.read()
            status, answer_headers = res.status, res.headers  # read case-insensitively, as slack_sdk keeps them
        data: Any = {}
        if raw and res.content_type == "application/json":  # a proxy's HTML 502 is an error without a body,
            try:  # as slack_sdk reads it
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = {}
        response = AsyncSlackResponse(
            client=self.client, http_verb="POST", api_url=url, req_args={"json": kwargs},
            data=data if isinstance(data, dict) else {}, headers=CIMultiDict(answer_headers),  # type: ignore[arg-type]
            status_code=status,
        )
        return response.validate()
