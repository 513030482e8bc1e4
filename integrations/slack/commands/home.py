"""The App Home tab and the model watcher: the desk's state at a glance, and alarms when models slip.

The watcher compares `LearnerScorer.health()` snapshots instead of hooking into the learners, so it
needs nothing from them and can run in whichever process holds the hot-swapped models (the worker).

It compares each learner's health with what was last announced, not with what this process saw at start:
a worker starts with untrained models, so its first loaded snapshot looked like a burst of new alarms
(every historical drift alarm, any fallback) on every restart. Given Redis, what was announced is shared,
and only the process that moves it to a newer snapshot posts, so N workers post each alarm once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, WatchError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gateway import keys, stats
from gateway.redis_conn import as_str
from integrations.slack.commands import format as fmt
from integrations.slack.commands.context import CommandContext

log = structlog.get_logger(__name__)

Health = dict[str, dict[str, Any]]

ANNOUNCED = f"{keys.PREFIX}models:announced"
"""learner -> JSON of its health as last announced to the leads channel, shared by every worker. No TTL:
one small field per learner, and losing it would make the next snapshot a silent baseline again."""


class HasHealth(Protocol):
    def health(self) -> Health: ...


async def home_view(ctx: CommandContext) -> dict[str, Any]:
    q = await stats.queue(ctx.redis)
    day = await stats.compute(ctx.redis, stats.WINDOWS["24h"])
    policy = await ctx.policies.current()
    canary = await ctx.policies.canary()
    health = await ctx.model_health()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Switchboard"}},
        fmt.section(f"*Queue* · waiting *{q['waiting']}* · claimed *{q['claimed']}* · breaching "
                    f"*{q['breaching']}*"),
        {"type": "divider"},
        fmt.section("\n".join(["*Last 24h*", *fmt.stats_lines(day)])),
        {"type": "divider"},
        fmt.section(fmt.models_text(health) if health is not None else "*Model health*\nRules only."),
        fmt.context(f"Policy v{policy.version}" + (f" · {fmt.canary_text(canary)}" if canary else "")
                    + f" · `{ctx.command} help` for commands"),
    ]
    return {"type": "home", "blocks": blocks}


def outsider_view(why: str) -> dict[str, Any]:
    """What a workspace member who is not an agent sees: no queue, stats or canary, just who to ask."""
    return {"type": "home", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Switchboard"}},
        fmt.section(f"Switchboard is for support agents, and you are not one ({why}). Ask a team lead to "
                    "add you to SWITCHBOARD_AGENTS if you should be."),
    ]}


async def publish_home(ctx: CommandContext, user: str, client: AsyncWebClient | None = None) -> None:
    """`client` is the listener's (the opening user's workspace, when installed by OAuth). The role is
    checked first, as for `/switchboard`: the queue, stats and canary are the desk's business."""
    role = await ctx.role(user)
    agent = role.agent or role.lead
    view = await home_view(ctx) if agent else outsider_view(role.why)
    await (client or ctx.client).views_publish(user_id=user, view=view)
    log.info("app_home_published", user=user, agent=agent)


def model_alerts(before: Health, after: Health) -> list[str]:
    """Lines for the leads channel: new drift alarms, fallbacks to rules, and recoveries."""
    out = []
    for name, now in sorted(after.items()):
        was = before.get(name, {})
        acc = now.get("rolling_accuracy")
        acc_s = "–" if acc is None else f"{acc:.2f}"
        new_alarms = int(now.get("drift_alarms", 0)) - int(was.get("drift_alarms", 0))
        if new_alarms > 0:
            out.append(f"📉 Drift alarm on the *{name}* model ({new_alarms} new, rolling accuracy {acc_s}).")
        if now.get("fallback") and not was.get("fallback"):
            out.append(f"⚠️ The *{name}* model fell back to the rules (rolling accuracy {acc_s} under its floor).")
        elif was.get("fallback") and not now.get("fallback"):
            out.append(f"✅ The *{name}* model recovered (rolling accuracy {acc_s}) and is trusted again.")
    return out


def advance(announced: Health, health: Health) -> tuple[Health, list[str]]:
    """(learners whose announced health moves to `health`, the lines that announces).

    A learner serving no snapshot yet (version 0: a process that just started) is skipped; one never
    announced is recorded silently, as the baseline; otherwise only a newer snapshot than the announced
    one is compared, so a process lagging behind, or reading the same snapshot again, says nothing.
    Health without a snapshot version is compared on every read."""
    updates: Health = {}
    lines: list[str] = []
    for name, now in sorted(health.items()):
        version, was = now.get("snapshot_version"), announced.get(name)
        if version == 0:
            continue
        if was is not None:
            seen = was.get("snapshot_version")
            if version is not None and seen is not None and version <= seen:
                continue
            lines += model_alerts({name: was}, {name: now})
        updates[name] = now
    return updates, lines


async def _announce_shared(redis: aioredis.Redis, health: Health) -> list[str]:
    """`advance` against the announced health in Redis, under WATCH: of several workers loading the same
    snapshot, the one whose write lands first posts and the others find it already announced."""
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(ANNOUNCED)
                raw = await pipe.hgetall(ANNOUNCED)
                announced = {as_str(k): json.loads(v) for k, v in raw.items()}
                updates, lines = advance(announced, health)
                if not updates:
                    return []
                pipe.multi()
                pipe.hset(ANNOUNCED, mapping={k: json.dumps(v, default=str) for k, v in updates.items()})
                await pipe.execute()
                return lines
            except WatchError:
                continue


async def watch_models(
    scorer: HasHealth, client: AsyncWebClient, leads_channel: str, stop: asyncio.Event, interval: float = 30.0,
    health: Callable[[], Health] | None = None, redis: aioredis.Redis | None = None,
) -> None:
    """Post model alarms to the leads channel until `stop` is set; a Slack or Redis error never ends the
    loop (the next read tries again). Without `redis` the announced health is this process's own, which
    still keeps restarts quiet but lets each worker post the same alarm."""
    read = health or scorer.health
    local: Health = {}
    while True:
        try:
            if redis is not None:
                lines = await _announce_shared(redis, read())
            else:
                updates, lines = advance(local, read())
                local.update(updates)
        except RedisError as exc:
            log.warning("model_alerts_unchecked", error=repr(exc))
            lines = []
        for line in lines:
            log.warning("model_alert", text=line)
            try:
                await client.chat_postMessage(channel=leads_channel, text=line)
            except SlackApiError as exc:
                log.warning("model_alert_not_posted", error=str(exc.response.get("error")))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
