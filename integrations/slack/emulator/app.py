"""HTTP surface of the emulator: the Slack Web API at ``/api/<method>`` plus local introspection.

Kept separate from the handlers so the later desk page can add routes here without touching
method semantics, and so the same app works standalone or mounted under ``/_slack/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from .config import EmulatorConfig
from .desk import Desk
from .deskweb import DESK, add_desk_routes
from .oauth import CLIENT_AUTH_METHODS, add_oauth_routes, with_client_credentials
from .socket_mode import SOCKETS, SocketHub, close_sockets, connections_open, socket_endpoint
from .state import EmulatorState, SlackError
from .webapi import METHODS
from .wire import dumps, loads

log = structlog.get_logger(__name__)

EMULATOR_STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)

_UTF8 = frozenset({"utf-8", "utf8"})
# structlog's level-filtering wrappers above debug: with one of them configured, log.debug does nothing.
_QUIET_WRAPPERS = frozenset(
    structlog.make_filtering_bound_logger(level)
    for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
)


def _debug_logged() -> bool:
    """Whether the per-call debug line would print, asked of the configuration as it is now.

    Logging is configured per process with ``cache_logger_on_first_use=False``, so every ``log.debug``
    assembled a logger only to drop the line, on every call; asking first skips that. Asked each call,
    not cached: tests reconfigure structlog (``capture_logs``) after the app is built.
    """
    return structlog.get_config()["wrapper_class"] not in _QUIET_WRAPPERS


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge query string and body, because slack_sdk uses GET query, form and JSON bodies."""
    params: dict[str, Any] = dict(request.query) if request.query_string else {}
    if request.method != "POST" or not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            if (request.charset or "utf-8").lower() in _UTF8:
                body = loads(await request.read())  # as request.json() would, without decoding to str first
            else:
                body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SlackError("invalid_json") from exc
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        params.update(body)
    else:
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _authorize(state: EmulatorState, request: web.Request, params: dict[str, Any]) -> None:
    """Slack takes the token from the Bearer header or a ``token`` param; both work here too."""
    header = request.headers.get("Authorization", "")
    token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else params.get("token")
    if not token:
        raise SlackError("not_authed")
    if token != state.config.bot_token:
        raise SlackError("invalid_auth")


async def web_api(request: web.Request) -> web.Response:
    """One entry point for every method so recording, faults and auth apply uniformly."""
    state = request.app[EMULATOR_STATE]
    method = request.match_info["method"]
    params: dict[str, Any] = {}
    headers: dict[str, str] = {}
    status = 200
    try:
        params = await _read_params(request)
        fault = state.take_fault(method)
        if fault is not None:
            raise fault
        handler = METHODS.get(method)
        if handler is None and method != "apps.connections.open":
            raise SlackError("unknown_method")
        if method == "apps.connections.open":
            header = request.headers.get("Authorization", "")
            token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else params.get("token")
            body = connections_open(state, request, token)
        elif method in CLIENT_AUTH_METHODS:
            params = with_client_credentials(request.headers.get("Authorization", ""), params)
            assert handler is not None
            body = handler(state, params)
        else:
            _authorize(state, request, params)
            assert handler is not None
            body = handler(state, params)
    except SlackError as err:
        body = {"ok": False, "error": err.error, **err.extra}
        status, headers = err.status, err.headers
    recorded = {key: value for key, value in params.items() if key not in {"token", "client_secret"}}
    raw = dumps(body)  # once, for the wire and the call log: a later change cannot reach either
    state.record(method, recorded, raw, status)
    if _debug_logged():
        log.debug("slack_emulator.call", method=method, status=status, ok=body.get("ok"), error=body.get("error"))
    return web.Response(body=raw, status=status, headers=headers, content_type="application/json", charset="utf-8")


async def state_summary(request: web.Request) -> web.Response:
    """Local-only peek at the workspace, handy with curl while running the gateway offline."""
    return web.json_response(request.app[EMULATOR_STATE].snapshot())


@web.middleware
async def learn_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Remember how clients reach us, so response_urls handed to the gateway point back here."""
    request.app[DESK].origin = f"{request.scheme}://{request.host}"
    return await handler(request)


async def _desk_session(app: web.Application) -> AsyncIterator[None]:
    """The desk's ClientSession lives exactly as long as the app (also when mounted as a sub-app)."""
    desk = app[DESK]
    # Only now is the mount prefix known ("/_slack/" under the gateway, "/" standalone).
    desk.prefix = str(app.router["desk_index"].url_for())
    app[SOCKETS].prefix = desk.prefix
    await desk.start()
    yield
    await desk.close()


def create_emulator_app(config: EmulatorConfig | None = None) -> web.Application:
    """Build a fresh emulator; each app owns its own state so parallel tests never share a workspace."""
    app = web.Application(middlewares=[learn_origin])
    state = EmulatorState(config or EmulatorConfig())
    app[EMULATOR_STATE] = state
    app[DESK] = Desk(state)
    app[SOCKETS] = state.sockets = SocketHub()
    app.router.add_get("/socket", socket_endpoint)
    app.on_shutdown.append(close_sockets)
    app.router.add_route("*", "/api/{method}", web_api)
    app.router.add_get("/state", state_summary)
    add_desk_routes(app)
    add_oauth_routes(app, state)
    app.cleanup_ctx.append(_desk_session)
    return app
