"""Twilio's side of a deployment under fire: every SMS webhook delivered twice at once (Twilio retries a
webhook it thinks went unanswered), and Twilio's Messages API failing with 500s and a 429 before it takes
the agents' replies (each agent event also sent three times, as Slack retries it).

Every SMS must reach exactly one card or thread; every agent reply must reach Twilio's API exactly once
(only a 201 counts: a refused request sent nothing)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.redis_conn import as_str
from integrations.twilio.signature import compute
from tests.faults import ledger
from tests.faults.cluster import Cluster, audit
from tests.faults.desk import lost_and_doubled, reply_to_each, until
from tests.harness import serve_app
from tests.twilio_standin import TAKEN_THEN_502, StandIn

TOKEN = "fault-twilio-auth-token-0123"
SID = "AC00000000000000000000000000000042"
SHOP = "+18005550199"
CUSTOMERS, PER_CUSTOMER = 6, 2
TEXTS = ("I was charged twice on my invoice, please refund", "also the app shows an error when I log in")


async def _deliver(cluster: Cluster, form: dict[str, str], deadline_s: float = 30.0) -> int:
    """Twilio's delivery of one webhook: retried (same MessageSid) until answered 200; returns attempts."""
    url = f"{cluster.url}/channels/twilio"
    headers = {"X-Twilio-Signature": compute(TOKEN, url, form.items())}
    deadline, attempts = time.monotonic() + deadline_s, 0
    while True:
        attempts += 1
        try:
            async with cluster.session.post(url, data=form, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status == 200:
                    return attempts
                assert resp.status == 503, resp.status
        except (aiohttp.ClientError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"{form['MessageSid']} never accepted"
        await asyncio.sleep(0.1)


def _sms(i: int, j: int) -> dict[str, Any]:
    return {"MessageSid": f"SM{i:02d}{j:030d}", "From": f"+1555000{i:04d}", "To": SHOP,
            "Body": TEXTS[j % len(TEXTS)], "NumMedia": "0", "AccountSid": SID}


async def test_twilio_webhook_retries_and_api_failures(cluster: Cluster) -> None:
    standin = StandIn(url="", retry_after="1")
    app = web.Application()
    standin.mount(app)
    api_url, runner = await serve_app(app)
    try:
        cluster.extra_env.update({"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": SID,
                                  "TWILIO_FROM_NUMBER": SHOP, "TWILIO_API_URL": api_url})
        await cluster.start_web()
        cluster.start_worker("w1")

        async def customer(i: int) -> int:
            attempts = 0
            for j in range(PER_CUSTOMER):  # in order, each delivered twice at once: a Twilio retry
                both = await asyncio.gather(_deliver(cluster, _sms(i, j)), _deliver(cluster, _sms(i, j)))
                attempts += sum(both)
            return attempts

        deliveries = sum(await asyncio.gather(*(customer(i) for i in range(CUSTOMERS))))
        await cluster.drained()
        accepted: dict[str, str] = {}
        for i in range(CUSTOMERS):
            conv = await cluster.redis.get(keys.customer_conversation(f"sms:+1555000{i:04d}"))
            assert conv is not None, f"customer {i} has no conversation"
            accepted.update({_sms(i, j)["MessageSid"]: as_str(conv) for j in range(PER_CUSTOMER)})
        found = await audit(cluster, accepted)

        # The first reply exhausts a send's 4 tries; one is taken by Twilio but answered 502 by a proxy.
        standin.script = [500, 500, 500, 500, 429, TAKEN_THEN_502, 500]
        replies = await reply_to_each(cluster, {f"tw-{i}": accepted[_sms(i, 0)["MessageSid"]]
                                                for i in range(CUSTOMERS)})
        await until(lambda: len(standin.created) >= len(replies), timeout=40)
        await asyncio.sleep(1.0)
        await cluster.drained()
        lost, doubled = lost_and_doubled(replies, [m["body"] for m in standin.created])
        texted = [(m["to"], m["body"]) for m in standin.created]  # nothing else texted twice to anyone
        doubled += [f"{to}: {body}" for to, body in set(texted) if texted.count((to, body)) > 1]
        refused = len(standin.calls) - len(standin.created)
        ledger.record("Twilio webhook retries; Twilio API 500/429/taken-then-502", found.messages + len(replies),
                      len(lost) + len(found.lost), len(doubled) + len(found.duplicated),
                      f"{deliveries} webhook deliveries; {refused} API calls refused, "
                      f"{standin.lookups} looked up")
        assert refused == 6 and standin.lookups >= 1 and deliveries >= 2 * CUSTOMERS * PER_CUSTOMER
        assert found.lost == [] and found.duplicated == []
        assert lost == [] and doubled == []
        assert {m["to"] for m in standin.created} == {f"+1555000{i:04d}" for i in range(CUSTOMERS)}
    finally:
        await runner.cleanup()
