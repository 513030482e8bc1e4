"""Secrets never reach a log event; PII in free text is masked in what is written out.

Two levels: `capture_logs` sees the raw event dicts *before* any processor, so a secret found there was
handed to the logger by our code (the redactor would only be hiding a bug). The PII checks go through
`configure_logging` and the real rendered JSON lines, because masking is the redactor's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import structlog
from structlog.testing import capture_logs

from gateway.logging import Redactor, configure_logging, redact_pii
from gateway.settings import LogFormat
from tests.conftest import Callback
from tests.harness import API_SECRET, cards, eventually, make_settings, start_gateway
from tests.slack_requests import SlackSender

SLACK_SECRET = "slack-signing-secret-for-log-test-42"
BOT_SECRET = "bot-webhook-secret-for-log-test-77"
PII = {
    "email": "jane.doe+vip@example.com",
    "card": "4111 1111 1111 1111",
    "phone": "+49 170 1234567",
}


async def test_full_flow_never_hands_a_secret_to_the_logger(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, callback: Callback
) -> None:
    settings = make_settings(redis_url, tmp_path, slack_signing_secret=SLACK_SECRET, api_callback_url=callback.url)
    with capture_logs() as events:
        gw = await start_gateway(settings)
        try:
            status, body = await gw.post_message({"customer_id": "log-1", "message_id": "m-1",
                                                  "text": "I was charged twice on my invoice!"})
            assert status == 202
            assert (await gw.post_message({"customer_id": "log-1", "message_id": "m-2", "text": "x"},
                                          secret="wrong-" + API_SECRET))[0] == 401
            card = (await eventually(lambda: cards(gw.slack, "support-billing")))[0]
            slack = SlackSender(gw.session, f"{gw.url}/slack/events", SLACK_SECRET)
            channel = gw.slack.channel_id("support-billing")
            conv_id = body["conversation_id"]
            await slack.click("U0ALICE", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
            await eventually(lambda: gw.rt.ops.holder(conv_id))
            await slack.message("U0ALICE", channel, "refunded", thread_ts=card["ts"])
            await eventually(lambda: callback.received)
            bad = SlackSender(gw.session, f"{gw.url}/slack/events", "wrong-" + SLACK_SECRET)
            assert (await bad.event({"type": "message", "channel": channel, "text": "forged"}))[0] == 401
        finally:
            await gw.close()
    assert len(events) > 10, "the flow should have logged something"
    dump = json.dumps(events, default=repr)
    for secret in (API_SECRET, SLACK_SECRET, gw.rt.slack.token):
        assert secret not in dump, f"secret {secret[:4]}… handed to the logger"


def rendered_lines(capsys: pytest.CaptureFixture[str], secrets: tuple[str, ...] = ()) -> list[dict]:
    configure_logging(LogFormat.JSON, "debug", secrets)
    log = structlog.get_logger("security-test")
    log.info("customer_wrote", text=f"mail me at {PII['email']} or call {PII['phone']}, card {PII['card']}",
             reasons=[f"card {PII['card']}"])
    log.warning("callback_failed", error=f"POST failed for {PII['email']}", conversation_id="conv_1")
    try:
        raise ValueError(f"bad phone {PII['phone']} with secret {secrets[0] if secrets else ''}")
    except ValueError as exc:
        log.error("pipeline_failed", error=repr(exc), exc_info=exc)
    log.info("config_loaded", token=secrets[0] if secrets else "", note=f"using {secrets[0] if secrets else ''}")
    out = capsys.readouterr().err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_pii_is_masked_in_rendered_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    lines = rendered_lines(capsys, ("super-secret-value-123",))
    text = json.dumps(lines)
    try:
        assert len(lines) == 4
        for value in (*PII.values(), "super-secret-value-123"):
            assert value not in text, f"{value} leaked into the log output"
        assert "[email]" in lines[0]["text"] and "[phone]" in lines[0]["text"] and "[card]" in lines[0]["text"]
        assert "[card]" in lines[0]["reasons"][0]
        assert "[redacted]" in lines[3]["token"]
    finally:
        structlog.reset_defaults()


def test_tracebacks_are_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    lines = rendered_lines(capsys, ("super-secret-value-123",))
    structlog.reset_defaults()
    assert "Traceback" in lines[2]["exception"]
    assert PII["phone"] not in lines[2]["exception"] and "super-secret-value-123" not in lines[2]["exception"]


def test_pii_and_secrets_in_nested_fields_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogFormat.JSON, "debug", ("super-secret-value-123",))
    try:
        structlog.get_logger("security-test").info(
            "customer_profile", profile={"email": PII["email"], "phone": PII["phone"]},
            response={"headers": {"authorization": "Bearer super-secret-value-123"}})
        out = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    assert PII["email"] not in out and PII["phone"] not in out and "super-secret-value-123" not in out


def test_luhn_gate_keeps_order_numbers_readable() -> None:
    assert redact_pii("order 1234567890123") == "order 1234567890123"  # not a valid card number
    assert redact_pii("card 4111-1111-1111-1111") == "card [card]"
    assert Redactor(["abcdef"])(None, "info", {"x": "key=abcdef"})["x"] == "key=[redacted]"
