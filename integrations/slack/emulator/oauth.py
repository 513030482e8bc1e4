"""Slack's OAuth v2 install flow, emulated: the authorize redirect and ``oauth.v2.access``.

Real Slack shows a consent screen, then redirects the installer's browser to the app's redirect URL
with a one-time ``code`` (valid 10 minutes) and the app's ``state``; the app trades the code for a
bot token with ``oauth.v2.access``, authenticating with its client id and secret (slack_sdk sends
them as HTTP Basic auth). Here consent is implied: ``GET /oauth/v2/authorize`` redirects at once.
The token handed out is the workspace's ``bot_token``, the one the rest of the emulator accepts.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .params import Params
from .state import EmulatorState, SlackError

CODE_TTL_SECONDS = 600
APP_ID = "A0SWITCHBD"  # the app id messages carry (webapi._APP_ID)
# Methods that authenticate with the app's client credentials instead of a token.
CLIENT_AUTH_METHODS = frozenset({"oauth.v2.access"})


@dataclass(frozen=True)
class Grant:
    """What the installer agreed to, remembered until the app redeems the code."""

    scopes: str
    user_scopes: str
    installer: str
    redirect_uri: str | None
    expires: float


def with_client_credentials(authorization: str, params: Params) -> Params:
    """Slack accepts the client id/secret as HTTP Basic auth or as ``client_id``/``client_secret`` params."""
    if not authorization.startswith("Basic "):
        return params
    try:
        client_id, _, client_secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SlackError("invalid_arguments") from exc
    return {**params, "client_id": client_id, "client_secret": client_secret}


def oauth_v2_access(state: EmulatorState, params: Params) -> dict[str, Any]:
    cfg = state.config
    if params.get("client_id") != cfg.client_id:
        raise SlackError("invalid_client_id")
    if params.get("client_secret") != cfg.client_secret:
        raise SlackError("bad_client_secret")
    grant = state.oauth_grants.pop(str(params.get("code") or ""), None)
    if grant is None or time.monotonic() > grant.expires:
        raise SlackError("invalid_code")
    if grant.redirect_uri and params.get("redirect_uri") != grant.redirect_uri:
        raise SlackError("bad_redirect_uri")
    authed_user: dict[str, Any] = {"id": grant.installer}
    if grant.user_scopes:
        authed_user.update(scope=grant.user_scopes, access_token=f"xoxp-emulator-{grant.installer}", token_type="user")
    return {
        "ok": True,
        "access_token": cfg.bot_token,
        "token_type": "bot",
        "scope": grant.scopes,
        "bot_user_id": cfg.bot_user_id,
        "app_id": APP_ID,
        "team": {"name": cfg.team_name, "id": cfg.team_id},
        "enterprise": None,
        "authed_user": authed_user,
        "is_enterprise_install": False,
    }


def _error_page(status: int, error: str) -> web.Response:
    return web.Response(status=status, text=f"Slack emulator: OAuth error: {error}\n", content_type="text/plain")


def add_oauth_routes(app: web.Application, state: EmulatorState) -> None:
    """``GET /oauth/v2/authorize``; ``?user=U…`` picks the installer (default: the first member)."""

    async def authorize(request: web.Request) -> web.Response:
        query = request.query
        cfg = state.config
        if query.get("client_id") != cfg.client_id:
            return _error_page(400, "invalid_client_id")
        redirect_uri = query.get("redirect_uri") or cfg.oauth_redirect_uri
        if not redirect_uri or not redirect_uri.startswith(("http://", "https://")):
            return _error_page(400, "bad_redirect_uri")
        installer = query.get("user") or cfg.users[0].id
        if installer not in state.users:
            return _error_page(400, "user_not_found")
        code = secrets.token_urlsafe(18)
        state.oauth_grants[code] = Grant(
            scopes=query.get("scope", ""),
            user_scopes=query.get("user_scope", ""),
            installer=installer,
            redirect_uri=query.get("redirect_uri"),
            expires=time.monotonic() + CODE_TTL_SECONDS,
        )
        answer = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode(answer)}")

    app.router.add_get("/oauth/v2/authorize", authorize, name="oauth_authorize")
