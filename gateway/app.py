"""The aiohttp application: public HTTP API, Slack endpoint, health, and (locally) the Slack emulator."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

import structlog
from aiohttp import web
from redis.exceptions import RedisError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from gateway import channels, metrics, outbound
from gateway.runtime import Runtime
from gateway.streams import ensure_groups, groups_ready
from integrations.slack.bolt_app import create_bolt_app, events_handler
from integrations.slack.commands import CommandContext
from integrations.slack.commands import register as register_commands
from integrations.slack.emulator import create_emulator_app
from integrations.slack.listeners import DeskContext
from integrations.slack.listeners import register as register_desk
from integrations.slack.oauth import oauth_routes
from integrations.webhook.api import make_forget_handler, make_handler
from integrations.webhook.encoding import HANDLER_ARGS, refuse_encoded_bodies

log = structlog.get_logger(__name__)

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
EMULATOR: web.AppKey[web.Application] = web.AppKey("emulator", web.Application)
BOLT: web.AppKey[AsyncApp] = web.AppKey("bolt", AsyncApp)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    checks: dict[str, bool] = {"redis": False, "consumer_groups": False}
    try:
        checks["redis"] = bool(await rt.redis.ping())
        checks["consumer_groups"] = await groups_ready(rt.redis, rt.settings.partitions)
    except (RedisError, OSError):
        pass
    ok = all(checks.values())
    return web.json_response({"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503)


def create_app(rt: Runtime) -> web.Application:
    app = web.Application(client_max_size=rt.settings.max_body_bytes, handler_args=HANDLER_ARGS,
                          middlewares=[refuse_encoded_bodies])
    app[RUNTIME] = rt
    bolt = create_bolt_app(rt.client, rt.slack.signing_secret, rt.oauth)
    register_commands(bolt, CommandContext.from_runtime(rt))
    app.add_routes(oauth_routes(bolt))
    app[BOLT] = bolt
    register_desk(
        bolt,
        DeskContext(redis=rt.redis, store=rt.store, ops=rt.ops, desk=rt.desk, agents=rt.settings.agents,
                    leads=rt.settings.leads, note_prefix=rt.settings.note_prefix, channels=rt.pipeline.channels,
                    aliases=rt.settings.aliases),
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/v1/messages", make_handler(rt.api_secret, rt.store.ingest, rt.settings.max_body_bytes))
    app.router.add_post("/slack/events", events_handler(bolt, rt.slack.signing_secret))
    metrics.mount(app, metrics.MetricsSource.of(rt.redis, rt.settings.partitions, rt.pipeline.scorer))
    assert rt.pipeline.eraser is not None
    app.router.add_delete("/v1/customers/{ref}", make_forget_handler(rt.api_secret, rt.pipeline.eraser))
    channels.mount(app, rt.channel_configs, rt.redis, rt.store.ingest, rt.session,
                   partial(outbound.report_undelivered, rt.store))
    if rt.slack.emulator is not None:
        app[EMULATOR] = create_emulator_app(rt.slack.emulator)
        app.add_subapp("/_slack/", app[EMULATOR])

    async def on_startup(app: web.Application) -> None:
        await ensure_groups(rt.redis, rt.settings.partitions)
        if rt.slack.emulator is not None:
            log.info(
                "slack_emulator_mounted",
                desk=f"http://{rt.settings.host}:{rt.settings.port}/_slack/",
                api=rt.slack.api_url,
            )

    async def socket_mode(app: web.Application) -> None:
        """With SLACK_APP_TOKEN, Slack talks to us over a WebSocket we open (no public URL needed)."""
        token = rt.settings.slack_app_token
        if token is None:
            return
        handler = AsyncSocketModeHandler(bolt, token.get_secret_value())
        task = asyncio.create_task(_connect(handler))

        async def close(app: web.Application) -> None:
            # on_shutdown runs before the server waits for open connections, so ours must go first.
            task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handler.close_async(), timeout=3)

        app.on_shutdown.append(close)

    app.on_startup.append(on_startup)
    app.on_startup.append(socket_mode)
    return app


async def _connect(handler: AsyncSocketModeHandler, attempts: int = 50) -> None:
    """Connect once the site listens (locally Slack is the emulator on this very server), bounded."""
    for attempt in range(attempts):
        try:
            await handler.connect_async()
            log.info("slack_socket_mode_connected")
            return
        except Exception as exc:
            if attempt == attempts - 1:
                log.error("slack_socket_mode_failed", error=repr(exc))
                return
            await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
