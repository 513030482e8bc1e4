"""aiohttp routes for bolt's install flow (bolt has no aiohttp request handler for OAuth either).

`GET /slack/install` starts an install (state cookie + redirect to Slack); `GET /slack/oauth_redirect`
is Slack's callback. Both go through `to_bolt_request`/`to_aiohttp_response` like `/slack/events`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow


def oauth_routes(bolt: AsyncApp) -> list[web.RouteDef]:
    """Routes for `app.add_routes(...)`; empty when the bolt app was built without OAuth."""
    flow = bolt.oauth_flow
    if flow is None:
        return []
    return [
        web.get(flow.install_path, _handler(flow, install=True)),
        web.get(flow.redirect_uri_path, _handler(flow, install=False)),
    ]


def _handler(flow: AsyncOAuthFlow, *, install: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        bolt_req = await to_bolt_request(request)
        bolt_resp = await (flow.handle_installation(bolt_req) if install else flow.handle_callback(bolt_req))
        return await to_aiohttp_response(bolt_resp)

    return handle
