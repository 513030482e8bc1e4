"""The aiohttp application: public HTTP API, Slack endpoint, health, and (locally) the Slack emulator."""

from __future__ import annotations

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from gateway.runtime import Runtime
from gateway.streams import ensure_groups, groups_ready
from integrations.slack.bolt_app import create_bolt_app, events_handler
from integrations.slack.emulator import create_emulator_app
from integrations.slack.listeners import DeskContext
from integrations.slack.listeners import register as register_desk
from integrations.slack.oauth import oauth_routes
from integrations.webhook.api import make_handler

log = structlog.get_logger(__name__)

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
EMULATOR: web.AppKey[web.Application] = web.AppKey("emulator", web.Application)


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
    app = web.Application(client_max_size=rt.settings.max_body_bytes)
    app[RUNTIME] = rt
    bolt = create_bolt_app(rt.client, rt.slack.signing_secret, rt.oauth)
    app.add_routes(oauth_routes(bolt))
    register_desk(
        bolt,
        DeskContext(redis=rt.redis, store=rt.store, ops=rt.ops, desk=rt.desk, agents=rt.settings.agents,
                    note_prefix=rt.settings.note_prefix),
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/v1/messages", make_handler(rt.api_secret, rt.store.ingest, rt.settings.max_body_bytes))
    app.router.add_post("/slack/events", events_handler(bolt))
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

    app.on_startup.append(on_startup)
    return app
