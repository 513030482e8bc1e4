"""The web chat widget's "a person will be with you in about N minutes" follows the desk's business hours.

Before: the status frame carried the bare first-response target ("about 10 minutes") while the desk was closed
for days, right under the hand-off notice saying "We're closed right now". Through the real gateway: a widget
session over its WebSocket, the worker, Redis and the Slack emulator's desk, with the billing desk's hours set
(as a lead's `hours` command does) so that it is closed now whatever day the suite runs on.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from gateway.policy_admin import Change, PolicyAdmin
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway, stored_card
from tests.test_webchat_support import recv_until

BILLING_FIRST_RESPONSE = 600


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    g = await start_gateway(make_settings(redis_url, tmp_path))
    yield g
    await g.close()


async def _billing_opens_in_three_days(gw: Gateway) -> datetime:
    """Billing staffed 09:00-10:00 UTC on one weekday only, three days from today; when it next opens."""
    opens = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    hours = {"days": [opens.weekday()], "open": "09:00", "close": "10:00", "timezone": "UTC"}
    change = Change("hours billing", lambda p: p.with_skill_changes("billing", business_hours=hours))
    await PolicyAdmin(gw.rt.redis, gw.rt.policies).apply(change, "U0TEST")
    await gw.rt.policies.current(force=True)
    return opens


async def _status_after_card(gw: Gateway, text: str) -> tuple[dict[str, Any], float]:
    """A widget visitor writes `text`; the status frame it is shown once the card is up, and when they wrote."""
    async with gw.session.post(f"{gw.url}/webchat/session", json={}, headers={"Origin": gw.url}) as resp:
        session = await resp.json()
    ws = await gw.session.ws_connect(f"{gw.url}/webchat/ws?token={session['token']}&since=0",
                                     headers={"Origin": gw.url})
    try:
        sent = time.time()
        await ws.send_json({"type": "message", "client_id": "c1", "text": text})
        await stored_card(gw, "support-billing")
        return await recv_until(ws, "status", timeout=10), sent
    finally:
        await ws.close()


async def test_the_widget_is_told_when_a_person_really_replies_while_the_desk_is_closed(gw: Gateway) -> None:
    opens = await _billing_opens_in_three_days(gw)
    status, sent = await _status_after_card(gw, "I was charged twice on my invoice, I want to talk to a person")
    due = opens.timestamp() + BILLING_FIRST_RESPONSE  # the SLA clock starts when the desk opens
    expected = math.ceil((due - sent) / 60)
    assert abs(status["eta_minutes"] - expected) <= 2, (status, expected)  # was: 10, the bare target
    reply_by = datetime.fromisoformat(status["reply_by"]).timestamp()  # the moment, for the widget to count down to
    assert abs(reply_by - due) <= 120, (status["reply_by"], datetime.fromtimestamp(due, UTC))


async def test_the_widget_shows_a_closed_desk_s_wait_in_days_and_the_time(gw: Gateway, browser: Browser) -> None:
    """What the customer reads: "about 3 days (by Thu 09:10)", not "about 4329 minutes" (nor "about 10 minutes")."""
    await _billing_opens_in_three_days(gw)
    widget = await browser.new_page(viewport={"width": 375, "height": 720})
    await widget.goto(f"{gw.url}/webchat/")
    await widget.get_by_role("button", name="Open support chat").click()
    await widget.get_by_label("Your message").fill("I was charged twice on my invoice, I want to talk to a person")
    await widget.keyboard.press("Enter")
    await eventually(lambda: cards(gw.slack, "support-billing"), timeout=15)
    shown = re.compile(r"A person will be with you in about \d+ (days|hours) \(by .+\)\.")
    await expect(widget.get_by_text(shown)).to_be_visible()
