"""HTTP side of the desk: the page, its polling endpoint, its actions, and response_url.

Routes are relative to the emulator's own root so they work standalone and under ``/_slack/``;
the page uses relative URLs for the same reason. Action endpoints only take JSON bodies: that
forces a CORS preflight, so another web page cannot drive a local desk by posting a form.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .desk import DEFAULT_USER, Desk
from .params import ts_key
from .state import EmulatorState, SlackError, is_top_level

STATIC_DIR = Path(__file__).with_name("static")
DESK: web.AppKey[Desk] = web.AppKey("emulator_desk", Desk)

# No inline script or style, nothing from elsewhere: even if a message slipped past the
# renderer's textContent discipline, the browser would refuse to run it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

Json = dict[str, Any]
Action = Callable[[Desk, Json], Awaitable[Json]]


async def index(request: web.Request) -> web.StreamResponse:
    html = (STATIC_DIR / "desk.html").read_text(encoding="utf-8")
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


# ---- polling ---------------------------------------------------------------------------------


def _unread(state: EmulatorState, user: str, channel_id: str) -> int:
    mark = ts_key(state.read_marks.get((user, channel_id), "0"))
    channel = state.channels[channel_id]
    return sum(1 for m in channel.messages if ts_key(m["ts"]) > mark and m.get("user") != user)


def _mark_read(state: EmulatorState, user: str, channel_id: str) -> None:
    messages = state.channels[channel_id].messages
    if messages:
        state.read_marks[(user, channel_id)] = max((m["ts"] for m in messages), key=ts_key)


def desk_state(desk: Desk, user: str, channel: str | None, thread: str | None) -> Json:
    """Everything the page shows for one user; the page re-renders only what changed."""
    state = desk.state
    channel_id = state.channel(channel).id if channel else next(iter(state.channels))
    _mark_read(state, user, channel_id)
    found = state.channels[channel_id]
    out: Json = {
        "revision": state.revision(),
        "user": user,
        "users": [
            {"id": u.id, "name": u.name, "real_name": u.real_name or u.name, "is_bot": u.is_bot}
            for u in state.users.values()
        ],
        "channels": [
            {"id": c.id, "name": c.name, "unread": _unread(state, user, c.id)} for c in state.channels.values()
        ],
        "channel": {"id": found.id, "name": found.name},
        "messages": [m for m in found.messages if is_top_level(m)],
        "thread": None,
        "ephemerals": [e for e in state.ephemerals_for(user) if e["channel"] == found.id],
        "modal": None,
        "home": state.home_views.get(user),
        "outbound": [r.summary() for r in state.outbound[-8:]],
    }
    if thread and thread in found.by_ts:
        out["thread"] = {"ts": thread, "messages": state.replies(found.id, thread)}
    modal = desk.open_modal(user)
    if modal is not None:
        out["modal"] = {**modal, "errors": state.view_errors.get(modal["id"], {})}
    return out


async def poll(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    query = request.query
    since = query.get("since")
    if since and since == str(desk.state.revision()):
        return web.json_response({"revision": desk.state.revision(), "unchanged": True})
    try:
        body = desk_state(desk, query.get("user") or DEFAULT_USER, query.get("channel"), query.get("thread"))
    except SlackError as err:
        return web.json_response({"ok": False, "error": err.error}, status=404)
    return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))


# ---- actions ---------------------------------------------------------------------------------


def _str(body: Json, key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise SlackError("invalid_arguments", field=key)
    return value


async def _click(desk: Desk, body: Json) -> Json:
    status = await desk.click(
        _str(body, "channel"),
        _str(body, "ts"),
        _str(body, "action_id"),
        user=_str(body, "user", DEFAULT_USER),
        value=body.get("value"),
        selected_option=body.get("selected_option"),
    )
    return {"status": status}


async def _post(desk: Desk, body: Json) -> Json:
    ts = await desk.post_as_user(
        _str(body, "channel"),
        _str(body, "text"),
        user=_str(body, "user", DEFAULT_USER),
        thread_ts=body.get("thread_ts"),
    )
    return {"ts": ts, "status": desk.state.outbound[-1].status}


async def _submit(desk: Desk, body: Json) -> Json:
    values = body.get("values")
    status = await desk.submit_view(_str(body, "view_id"), values if isinstance(values, dict) else {}, body.get("user"))
    return {"status": status}


async def _close(desk: Desk, body: Json) -> Json:
    desk.close_view(_str(body, "view_id"), body.get("user"))
    return {}


async def _slash(desk: Desk, body: Json) -> Json:
    status = await desk.slash(
        _str(body, "command"),
        str(body.get("text") or ""),
        user=_str(body, "user", DEFAULT_USER),
        channel=_str(body, "channel", "general"),
    )
    return {"status": status}


async def _home(desk: Desk, body: Json) -> Json:
    return {"status": await desk.open_home(_str(body, "user", DEFAULT_USER))}


ACTIONS: dict[str, Action] = {
    "click": _click,
    "post": _post,
    "submit": _submit,
    "close": _close,
    "slash": _slash,
    "home": _home,
}


async def _json_body(request: web.Request) -> Json:
    if request.content_type != "application/json":
        raise SlackError("invalid_content_type", status=415)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SlackError("invalid_json", status=400) from exc
    if not isinstance(body, dict):
        raise SlackError("invalid_json", status=400)
    return body


async def desk_action(request: web.Request) -> web.Response:
    action = ACTIONS.get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound()
    try:
        result = await action(request.app[DESK], await _json_body(request))
    except SlackError as err:
        status = err.status if err.status != 200 else 400
        return web.json_response({"ok": False, "error": err.error, **err.extra}, status=status)
    return web.json_response({"ok": True, **result})


async def response_url(request: web.Request) -> web.Response:
    """Slack's response_url: JSON message body; answers ``{"ok": true}`` like hooks.slack.com."""
    try:
        body = await _json_body(request)
        request.app[DESK].respond(request.match_info["id"], body)
    except SlackError as err:
        return web.json_response({"ok": False, "error": err.error}, status=err.status if err.status != 200 else 400)
    return web.json_response({"ok": True})


def add_desk_routes(app: web.Application) -> None:
    app.router.add_get("/", index, name="desk_index")
    app.router.add_get("/desk/state", poll)
    app.router.add_post("/desk/{action}", desk_action)
    app.router.add_post("/response/{id}", response_url)
    app.router.add_static("/static/", STATIC_DIR, name="desk_static")
