"""`/switchboard`: team leads steer routing from Slack (policy, dry runs, canaries, stats, model health).

Wiring (gateway/app.py, after the desk listeners):

    from integrations.slack.commands import CommandContext, register as register_commands
    register_commands(bolt, CommandContext.from_runtime(rt))

Every listener acks first (Slack's 3 s limit) and answers through `respond()` (the response_url), so a
slow dry run never times out; answers are ephemeral, applied changes are also posted to the leads channel.
"""

from __future__ import annotations

import weakref
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.commands.context import DEFAULT_COMMAND, CommandContext
from integrations.slack.commands.format import APPLY_ACTION
from integrations.slack.commands.grammar import Parsed, UsageError, parse
from integrations.slack.commands.handlers import Answer, handle
from integrations.slack.commands.home import model_alerts, publish_home, watch_models

__all__ = ["DEFAULT_COMMAND", "CommandContext", "model_alerts", "register", "registered", "run", "watch_models"]

log = structlog.get_logger(__name__)
_REGISTERED: weakref.WeakSet[AsyncApp] = weakref.WeakSet()


def registered(bolt: AsyncApp) -> bool:
    """Whether `register` already ran on this app (it is idempotent; tests use this to wire once)."""
    return bolt in _REGISTERED


async def run(ctx: CommandContext, user: str, text: str) -> Answer:
    """Parse and handle one command line (the Slack-free entry point)."""
    try:
        parsed = parse(text)
    except UsageError as exc:
        return Answer(f"⚠️ {exc}")
    return await handle(ctx, user, parsed)


async def _answer(ctx: CommandContext, respond: AsyncRespond, answer: Answer, **extra: Any) -> None:
    await respond(text=answer.text, blocks=answer.blocks or None, response_type="ephemeral", **extra)
    if answer.announce:
        await ctx.announce(answer.announce)


def register(bolt: AsyncApp, ctx: CommandContext) -> None:
    if bolt in _REGISTERED:
        return
    _REGISTERED.add(bolt)

    @bolt.command(ctx.command)
    async def command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, text = str(command.get("user_id", "")), str(command.get("text", ""))
        log.info("slash_command", user=user, command=ctx.command, text=text[:200])
        await _answer(ctx, respond, await run(ctx, user, text))

    @bolt.action(APPLY_ACTION)
    async def apply_button(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user = str(body["user"]["id"])
        token = str(body["actions"][0].get("value", ""))
        answer = await handle(ctx, user, Parsed(verb="apply", args=[token], raw="apply (button)"))
        await _answer(ctx, respond, answer, replace_original=True)

    @bolt.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") == "home":
            await publish_home(ctx, str(event["user"]), client)
