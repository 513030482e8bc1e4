"""Which proxies X-Forwarded-For is believed from, over real HTTP and WebSockets and real Redis.

Before WEBCHAT_TRUSTED_PROXY_NETS, WEBCHAT_TRUSTED_PROXIES >= 1 believed the header from any peer: a client that
reached the app port directly (a pod IP, a NodePort) named a fresh address per request and walked past every
per-address limit. The test client's address is 127.0.0.1, so "10.0.0.0/8" makes it a stranger and
"127.0.0.1/32" makes it the proxy.
"""

from __future__ import annotations

import ipaddress

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError
from structlog.testing import capture_logs

from integrations.webchat.clientip import client_address, parse_networks
from integrations.webchat.config import WebchatConfig
from tests.test_webchat_limits import WINDOW_S, fresh_window, post_session, refused, socket, started, try_open
from tests.test_webchat_support import recv

NETS = "10.0.0.0/8, 2001:db8::/32"
ANY_PEER = "webchat_forwarded_for_from_any_peer"


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client"), [
    ("203.0.113.50", ["198.51.100.1"], 1, "203.0.113.50"),  # the peer is no proxy: a forged header is ignored
    ("10.0.0.5", ["198.51.100.1"], 1, "198.51.100.1"),
    ("::ffff:10.0.0.5", ["198.51.100.1"], 1, "198.51.100.1"),  # a dual-stack listener's view of the proxy
    ("2001:db8::5", ["198.51.100.1"], 1, "198.51.100.1"),
    ("10.0.0.5", ["198.51.100.1, 10.1.1.1"], 2, "198.51.100.1"),  # the hop skipped is a proxy
    ("10.0.0.5", ["198.51.100.1", "10.1.1.1"], 2, "198.51.100.1"),  # two headers are one list
    ("10.0.0.5", ["198.51.100.1, 203.0.113.7"], 2, "203.0.113.7"),  # came past the outer proxy: its entry is forged
    ("10.0.0.5", ["unknown, 10.1.1.1"], 2, "10.0.0.5"),
    ("10.0.0.5", ["10.1.1.1"], 2, "10.0.0.5"),  # fewer entries than proxies, all proxies: the peer
    ("10.0.0.5", [], 1, "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.1"], 0, "10.0.0.5"),  # no proxies configured: the networks change nothing
])
def test_client_address_walks_only_through_trusted_networks(peer: str, forwarded: list[str], trusted: int,
                                                            client: str) -> None:
    assert client_address(peer, forwarded, trusted, parse_networks(NETS)) == client


def test_without_networks_any_peer_is_believed_as_before() -> None:
    assert client_address("203.0.113.50", ["198.51.100.1, 198.51.100.2"], 1, ()) == "198.51.100.2"
    assert client_address("203.0.113.50", ["garbage, 198.51.100.2"], 2, ()) == "203.0.113.50"


async def test_forwarded_for_is_believed_only_from_trusted_proxy_networks(redis: aioredis.Redis) -> None:
    await fresh_window(WINDOW_S)
    limits = {"session_rate": 1, "session_window_s": WINDOW_S, "trusted_proxies": 1}
    async with started(redis, trusted_proxy_nets="10.0.0.0/8", **limits) as direct:  # we reached the app port
        assert (await post_session(direct, "203.0.113.7"))[0] == 200
        assert (await post_session(direct, "203.0.113.8"))[0] == 429  # a fresh forged address: same budget (ours)
    limits["trusted_proxies"] = 2  # an outer proxy in 10/8, and us, the inner one
    async with started(redis, trusted_proxy_nets="127.0.0.1/32, 10.0.0.0/8", **limits) as proxied:
        assert (await post_session(proxied, "203.0.113.7"))[0] == 200  # past the outer proxy, through us: believed
        assert (await post_session(proxied, "203.0.113.7"))[0] == 429
        assert (await post_session(proxied, "203.0.113.8, 10.1.2.3"))[0] == 200  # through both proxies
        assert (await post_session(proxied, "198.51.100.1, 203.0.113.7"))[0] == 429  # a forged entry on the left
    async with started(redis, trusted_proxy_nets="10.0.0.0/8", sockets_per_ip=1, trusted_proxies=1) as direct:
        tokens = [(await direct.session())["token"] for _ in range(2)]
        held = await socket(direct, tokens[0], forwarded_for="203.0.113.7")
        assert (await recv(held))["type"] == "hello"
        assert (await refused(direct, tokens[1], forwarded_for="203.0.113.8"))[1] == 4429
    async with started(redis, trusted_proxy_nets="127.0.0.1/32", sockets_per_ip=1, trusted_proxies=1) as proxied:
        tokens = [(await proxied.session())["token"] for _ in range(2)]
        held = await socket(proxied, tokens[0], forwarded_for="203.0.113.7")
        assert (await recv(held))["type"] == "hello"
        assert await try_open(proxied, tokens[1], forwarded_for="203.0.113.8")


def test_trusted_proxy_networks_are_validated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBCHAT_TRUSTED_PROXY_NETS", " 10.0.0.0/8, 127.0.0.1 ,2001:db8::/32")
    nets = WebchatConfig(_env_file=None).proxy_nets  # type: ignore[call-arg]
    assert nets == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"),
                    ipaddress.ip_network("2001:db8::/32"))
    for bad, said in [("10.0.0.0/8,nonsense", "'nonsense' is not a network"),
                      ("10.0.0.1/8", "has host bits set"), ("10.0.0.0/33", "'10.0.0.0/33' is not a network")]:
        monkeypatch.setenv("WEBCHAT_TRUSTED_PROXY_NETS", bad)
        with pytest.raises(ValidationError) as caught:
            WebchatConfig(_env_file=None)  # type: ignore[call-arg]
        assert "WEBCHAT_TRUSTED_PROXY_NETS" in str(caught.value) and said in str(caught.value), str(caught.value)
    monkeypatch.delenv("WEBCHAT_TRUSTED_PROXY_NETS")
    assert WebchatConfig(_env_file=None).proxy_nets == ()  # type: ignore[call-arg]


async def test_trusting_proxies_from_any_peer_is_warned_once_at_startup(redis: aioredis.Redis) -> None:
    with capture_logs() as logs:
        async with started(redis, trusted_proxies=1):
            pass
    assert [e["event"] for e in logs].count(ANY_PEER) == 1
    with capture_logs() as logs:
        async with started(redis, trusted_proxies=1, trusted_proxy_nets="10.0.0.0/8"):
            pass
    assert [e["event"] for e in logs].count(ANY_PEER) == 0


async def test_an_ignored_forwarded_for_is_warned_once(redis: aioredis.Redis) -> None:
    with capture_logs() as logs:
        async with started(redis) as chat:  # no trusted proxies: the header is ignored, and said so once
            s = await chat.session()
            assert (await post_session(chat, "203.0.113.7"))[0] == 200
            ws = await socket(chat, s["token"], forwarded_for="203.0.113.7")
            assert (await recv(ws))["type"] == "hello"
            await ws.close()
    assert len([e for e in logs if e["event"] == "webchat_forwarded_for_ignored"]) == 1
    with capture_logs() as logs:
        async with started(redis, trusted_proxies=1, trusted_proxy_nets="10.0.0.0/8") as chat:
            for forwarded in ("203.0.113.7", "203.0.113.8"):
                assert (await post_session(chat, forwarded))[0] == 200
    ignored = [e for e in logs if e["event"] == "webchat_forwarded_for_ignored"]
    assert len(ignored) == 1 and "WEBCHAT_TRUSTED_PROXY_NETS" in ignored[0]["hint"]  # a proxy we were not told of?
