"""A token offered as a subprotocol without ours beside it is refused before aiohttp can log it (diff review).

aiohttp logs the client's offered subprotocols, token included, when none of them matches the server's.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.harness import Gateway


async def test_a_token_offered_without_our_protocol_is_a_400(gateway: Gateway) -> None:
    async with gateway.session.post(f"{gateway.url}/webchat/session", json={}, headers={"Origin": gateway.url}) as resp:
        token = (await resp.json())["token"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with gateway.session.ws_connect(f"{gateway.url}/webchat/ws?since=0",
                                              protocols=(f"switchboard.token.{token}",),
                                              headers={"Origin": gateway.url}):
            pass
    assert refused.value.status == 400
