"""Web chat to Slack and back, as two people would use it: a customer in the widget, an agent on the desk.

Both pages run in headless Chromium against one real gateway (real Redis, real worker, the Slack
emulator's desk page). The agent's replies are typed on the desk page and reach the widget.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.harness import Gateway, cards, eventually
from tests.widget_page import texts

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def test_customer_in_widget_and_agent_on_desk(gateway: Gateway, browser: Browser) -> None:
    widget = await browser.new_page(viewport={"width": 375, "height": 720})
    await widget.goto(f"{gateway.url}/webchat/")
    await widget.get_by_role("button", name="Open support chat").click()
    await widget.get_by_label("Your message").fill("My parcel never arrived and I want to talk to a person")
    await widget.keyboard.press("Enter")
    card = (await eventually(lambda: cards(gateway.slack, "support-shipping"), timeout=15))[0]
    assert "Web chat" in str(card["blocks"])
    log = widget.get_by_role("log", name="Conversation")
    await expect(widget.get_by_text("A person will be with you in about", exact=False)).to_be_visible()

    desk = await browser.new_page(viewport={"width": 1400, "height": 900})
    await desk.goto(f"{gateway.url}/_slack/")
    await desk.locator("button.channel", has_text="support-shipping").click()
    messages = desk.locator("#messages")
    await messages.get_by_role("button", name="Claim").click()
    await expect(messages).to_contain_text("Claimed by")
    await messages.get_by_role("button", name="Start thread").click()
    await desk.get_by_label("Reply in thread").fill("Hi, I'm Alice. I'm checking with the courier now.")
    await desk.get_by_role("button", name="Reply", exact=True).click()
    await expect(log.get_by_text("Hi, I'm Alice. I'm checking with the courier now.")).to_be_visible(timeout=15_000)

    # The customer's connection drops while the agent answers: nothing lost, nothing doubled.
    await widget.evaluate("window.SwitchboardChat._ws.close()")
    await desk.get_by_label("Reply in thread").fill("It was delivered to your neighbour at no. 12.")
    await desk.get_by_role("button", name="Reply", exact=True).click()
    await expect(log.get_by_text("It was delivered to your neighbour at no. 12.")).to_be_visible(timeout=15_000)
    shown = await texts(widget)
    assert shown.count("It was delivered to your neighbour at no. 12.") == 1
    assert shown.count("Hi, I'm Alice. I'm checking with the courier now.") == 1

    await messages.get_by_role("button", name="Resolve").click()
    dialog = desk.get_by_role("dialog")
    await dialog.get_by_role("button", name="Resolve").click()
    await expect(dialog).to_be_hidden()
    rate = widget.get_by_role("button", name="Rate 5 out of 5")
    await rate.wait_for(timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    await widget.screenshot(path=str(ARTIFACTS / "webchat-with-agent.png"), full_page=True)
    await desk.screenshot(path=str(ARTIFACTS / "desk-webchat.png"), full_page=True)
    await rate.click()
    await widget.get_by_text("Thank you for your feedback!").wait_for()
