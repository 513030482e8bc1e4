"""The whole desk loop as a person does it, in headless Chromium on the emulator's desk page.

A customer writes through the API; the card appears; an agent claims it, replies in the thread (the
customer receives it), resolves with a corrected skill; the learner learns from that outcome and
the workers' next prediction for a similar message moves towards the corrected skill.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from learners.process import LearnerConfig, run_learner
from tests.conftest import Callback
from tests.harness import Gateway, cards, eventually, make_settings, start_gateway

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TEXT = "The app charged my card twice when I pressed the button"


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback) -> AsyncIterator[Gateway]:
    g = await start_gateway(make_settings(redis_url, tmp_path, api_callback_url=callback.url))
    yield g
    await g.close()


async def test_claim_reply_resolve_with_correction_teaches_the_learner(
    gw: Gateway, browser: Browser, callback: Callback
) -> None:
    scorer = gw.rt.pipeline.scorer
    before = scorer.learner("skill").predict_proba_one(TEXT).get("technical", 0.0)  # type: ignore[attr-defined]
    learner_task = asyncio.create_task(
        run_learner(gw.rt.redis, stop=gw.stop, config=LearnerConfig(snapshot_every=1, block_ms=100))
    )
    status, body = await gw.post_message({"customer_id": "web-1", "message_id": "m1", "text": TEXT})
    assert status == 202
    await eventually(lambda: cards(gw.slack, "support-billing"))

    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{gw.url}/_slack/")
    await page.locator("button.channel", has_text="support-billing").click()
    messages = page.locator("#messages")
    await expect(messages.get_by_text(TEXT)).to_be_visible()
    await messages.get_by_role("button", name="Claim").click()
    await expect(messages).to_contain_text("Claimed by")

    await messages.get_by_role("button", name="Start thread").click()
    await page.get_by_label("Reply in thread").fill("So sorry! I have refunded the second charge.")
    await page.get_by_role("button", name="Reply", exact=True).click()
    delivered = await eventually(lambda: callback.received, timeout=15)
    assert delivered[0]["text"] == "So sorry! I have refunded the second charge."
    assert delivered[0]["conversation_id"] == body["conversation_id"]
    await expect(page.locator("#thread-messages")).to_contain_text("white_check_mark")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "desk-loop.png"), full_page=True)

    await messages.get_by_role("button", name="Resolve").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Final skill").select_option("technical")
    await dialog.get_by_label("Resolution note").fill("app bug double-submitted the payment")
    await dialog.get_by_role("button", name="Resolve").click()
    await expect(dialog).to_be_hidden()
    await expect(messages).to_contain_text("Resolved by")

    async def learned() -> bool:
        await scorer.refresh(gw.rt.redis)  # type: ignore[attr-defined]
        after = scorer.learner("skill").predict_proba_one(TEXT).get("technical", 0.0)  # type: ignore[attr-defined]
        return after > before

    await eventually(learned, timeout=20, interval=0.3)
    assert scorer.health()["skill"]["labels_seen"] >= 1  # type: ignore[attr-defined]
    assert errors == []
    gw.stop.set()
    await asyncio.wait_for(learner_task, timeout=10)
