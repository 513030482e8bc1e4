"""Slack Web API method handlers, one small function per method, wired up by ``METHODS``.

Handlers take already-parsed params and return the JSON body of a successful answer; any
failure is a raised ``SlackError`` so error shapes come from one place (the app layer). The
dispatch table keeps adding a method to a one-line change instead of growing an if-chain.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable
from typing import Any

from .config import EmulatedUser
from .oauth import oauth_v2_access
from .params import Params, flag, jsonish, paginate, parse_blocks, parse_metadata, window
from .state import Channel, EmulatorState, SlackError, is_top_level

Handler = Callable[[EmulatorState, Params], dict[str, Any]]

_CHANNEL_NAME = re.compile(r"^[a-z0-9_-]+$")
_APP_ID = "A0SWITCHBD"


def _render(message: dict[str, Any], with_metadata: bool = True) -> dict[str, Any]:
    """A shallow copy is enough: answers are serialised before any other call can change a message."""
    out = dict(message)
    if not with_metadata:
        out.pop("metadata", None)
    return out


def _own_message(state: EmulatorState, message: dict[str, Any], error: str) -> None:
    if message.get("bot_id") != state.bot_id:
        raise SlackError(error)


# ---- auth, conversations ---------------------------------------------------------------------


def auth_test(state: EmulatorState, params: Params) -> dict[str, Any]:
    cfg = state.config
    return {
        "ok": True,
        "url": "https://switchboard-emulator.slack.com/",
        "team": cfg.team_name,
        "user": state.users[cfg.bot_user_id].name,
        "team_id": cfg.team_id,
        "user_id": cfg.bot_user_id,
        "bot_id": state.bot_id,
        "is_enterprise_install": False,
    }


def _channel_json(state: EmulatorState, channel: Channel) -> dict[str, Any]:
    return channel.as_slack(is_general=channel.name == "general", num_members=len(state.users))


def conversations_list(state: EmulatorState, params: Params) -> dict[str, Any]:
    types = [t.strip() for t in str(params.get("types") or "public_channel").split(",")]
    wanted = [
        c
        for c in state.channels.values()
        if ("private_channel" if c.is_private else "public_channel") in types
    ]
    page, next_cursor = paginate([_channel_json(state, c) for c in wanted], params, 100, "id")
    return {"ok": True, "channels": page, "response_metadata": {"next_cursor": next_cursor}}


def conversations_info(state: EmulatorState, params: Params) -> dict[str, Any]:
    return {"ok": True, "channel": _channel_json(state, state.channel(params.get("channel")))}


def conversations_create(state: EmulatorState, params: Params) -> dict[str, Any]:
    name = str(params.get("name") or "")
    if not name:
        raise SlackError("invalid_name_required")
    if len(name) > 80:
        raise SlackError("invalid_name_maxlength")
    if not _CHANNEL_NAME.match(name):
        raise SlackError("invalid_name_specials")
    if state.channel_id(name) in state.channels:
        raise SlackError("name_taken")
    channel = state.create_channel(name, is_private=flag(params, "is_private"))
    return {"ok": True, "channel": _channel_json(state, channel)}


def conversations_history(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    with_metadata = flag(params, "include_all_metadata")
    newest_first = window([m for m in channel.messages if is_top_level(m)], params)[::-1]
    page, next_cursor = paginate(newest_first, params, 100, "ts")
    return {
        "ok": True,
        "messages": [_render(m, with_metadata) for m in page],
        "has_more": bool(next_cursor),
        "pin_count": 0,
        "response_metadata": {"next_cursor": next_cursor},
    }


def conversations_replies(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    thread = state.replies(channel.id, str(params.get("ts") or ""))
    with_metadata = flag(params, "include_all_metadata")
    items = [thread[0], *window(thread[1:], params)]
    page, next_cursor = paginate(items, params, 1000, "ts")
    return {
        "ok": True,
        "messages": [_render(m, with_metadata) for m in page],
        "has_more": bool(next_cursor),
        "response_metadata": {"next_cursor": next_cursor},
    }


# ---- chat ------------------------------------------------------------------------------------


def chat_post_message(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    text = str(params.get("text") or "")
    blocks = parse_blocks(params)
    if not text and not blocks and not params.get("attachments"):
        raise SlackError("no_text")
    metadata = parse_metadata(params)
    thread_ts = str(params.get("thread_ts") or "") or None
    if thread_ts:
        state.message(channel, thread_ts, error="thread_not_found")
    state.throttle_post(channel)
    message: dict[str, Any] = {
        "type": "message",
        "user": state.config.bot_user_id,
        "bot_id": state.bot_id,
        "app_id": _APP_ID,
        "team": state.config.team_id,
        "text": text,
        "ts": state.next_ts(),
    }
    if blocks is not None:
        message["blocks"] = blocks
    if metadata is not None:
        message["metadata"] = metadata
    attachments = jsonish(params, "attachments", "invalid_attachments")
    if attachments:
        message["attachments"] = attachments
    if params.get("username"):
        message["username"] = str(params["username"])
    if thread_ts and flag(params, "reply_broadcast"):
        message["subtype"] = "thread_broadcast"
    state.add_message(channel, message, thread_ts)
    # The stored message itself, not a copy: the app layer serialises the answer before anything can change it
    # (responses.py, the other caller, drops the answer).
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": message}


def chat_update(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    message = state.message(channel, str(params.get("ts") or ""))
    _own_message(state, message, "cant_update_message")
    blocks = parse_blocks(params)
    metadata = parse_metadata(params)
    if "text" not in params and blocks is None:
        raise SlackError("no_text")
    if "text" in params:
        message["text"] = str(params.get("text") or "")
    if blocks is not None:
        message["blocks"] = blocks
    if metadata is not None:
        message["metadata"] = metadata
    message["edited"] = {"user": state.config.bot_user_id, "ts": state.next_ts()}
    return {
        "ok": True,
        "channel": channel.id,
        "ts": message["ts"],
        "text": message["text"],
        "message": _render(message),
    }


def chat_post_ephemeral(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    user = state.user(params.get("user"))
    text = str(params.get("text") or "")
    blocks = parse_blocks(params)
    if not text and not blocks:
        raise SlackError("no_text")
    ts = state.next_ts()
    state.ephemerals.append(
        {
            "channel": channel.id,
            "user": user.id,
            "message_ts": ts,
            "text": text,
            "blocks": blocks or [],
            "thread_ts": params.get("thread_ts") or None,
        }
    )
    return {"ok": True, "message_ts": ts}


def chat_delete(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    ts = str(params.get("ts") or "")
    _own_message(state, state.message(channel, ts), "cant_delete_message")
    state.remove_message(channel, ts)
    return {"ok": True, "channel": channel.id, "ts": ts}


# ---- users -----------------------------------------------------------------------------------


def _user_json(state: EmulatorState, user: EmulatedUser) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "real_name": user.real_name or user.name,
        "real_name_normalized": user.real_name or user.name,
        "display_name": user.name,
        "display_name_normalized": user.name,
        "title": user.title,
        "team": state.config.team_id,
    }
    if user.email:
        profile["email"] = user.email
    if user.is_bot:
        profile["bot_id"] = state.bot_id if user.id == state.config.bot_user_id else ""
    return {
        "id": user.id,
        "team_id": state.config.team_id,
        "name": user.name,
        "deleted": False,
        "real_name": user.real_name or user.name,
        "tz": user.tz,
        "tz_label": user.tz,
        "tz_offset": 0,
        "is_admin": user.is_admin,
        "is_owner": False,
        "is_bot": user.is_bot,
        "is_app_user": False,
        "updated": 0,
        "profile": profile,
    }


def users_info(state: EmulatorState, params: Params) -> dict[str, Any]:
    return {"ok": True, "user": _user_json(state, state.user(params.get("user")))}


def users_list(state: EmulatorState, params: Params) -> dict[str, Any]:
    members = [_user_json(state, u) for u in state.users.values()]
    page, next_cursor = paginate(members, params, 200, "id")
    return {"ok": True, "members": page, "cache_ts": 0, "response_metadata": {"next_cursor": next_cursor}}


# ---- views and reactions ---------------------------------------------------------------------


def _view_input(params: Params, expected_type: str | None) -> dict[str, Any]:
    view = jsonish(params, "view", "invalid_arguments")
    if not isinstance(view, dict) or not isinstance(view.get("type"), str):
        raise SlackError("invalid_arguments")
    if expected_type and view["type"] != expected_type:
        raise SlackError("invalid_arguments")
    if "blocks" in view and not isinstance(view["blocks"], list):
        raise SlackError("invalid_blocks")
    return view


def store_view(state: EmulatorState, view: dict[str, Any], view_id: str, user_id: str) -> dict[str, Any]:
    stored = {
        "id": view_id,
        "team_id": state.config.team_id,
        "type": view["type"],
        "title": view.get("title"),
        "submit": view.get("submit"),
        "close": view.get("close"),
        "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "state": {"values": {}},
        "hash": f"{state.next_ts()}.{secrets.token_hex(4)}",
        "clear_on_close": bool(view.get("clear_on_close")),
        "notify_on_close": bool(view.get("notify_on_close")),
        "root_view_id": view_id,
        "previous_view_id": None,
        "app_id": _APP_ID,
        "bot_id": state.bot_id,
        "user_id": user_id,
    }
    state.views[view_id] = stored
    return copy.deepcopy(stored)


def _check_hash(existing: dict[str, Any], params: Params) -> None:
    if params.get("hash") and params["hash"] != existing["hash"]:
        raise SlackError("hash_conflict")


def views_open(state: EmulatorState, params: Params) -> dict[str, Any]:
    if not params.get("trigger_id"):
        raise SlackError("invalid_arguments")
    view = _view_input(params, "modal")
    user_id = state.use_trigger(str(params["trigger_id"]))
    return {"ok": True, "view": store_view(state, view, state.next_id("V"), user_id)}


def views_update(state: EmulatorState, params: Params) -> dict[str, Any]:
    view = _view_input(params, None)
    view_id, external_id = params.get("view_id"), params.get("external_id")
    matches = [
        v
        for v in state.views.values()
        if (view_id and v["id"] == view_id) or (external_id and v["external_id"] == external_id)
    ]
    if not matches:
        raise SlackError("not_found")
    _check_hash(matches[0], params)
    state.view_errors.pop(matches[0]["id"], None)
    return {"ok": True, "view": store_view(state, view, matches[0]["id"], matches[0]["user_id"])}


def views_publish(state: EmulatorState, params: Params) -> dict[str, Any]:
    user = state.user(params.get("user_id"))
    view = _view_input(params, "home")
    existing = state.home_views.get(user.id)
    if existing:
        _check_hash(existing, params)
    stored = store_view(state, view, existing["id"] if existing else state.next_id("V"), user.id)
    state.home_views[user.id] = state.views[stored["id"]]
    return {"ok": True, "view": stored}


def usergroups_users_list(state: EmulatorState, params: Params) -> dict[str, Any]:
    members = state.config.usergroups.get(str(params.get("usergroup", "")))
    if members is None:
        raise SlackError("no_such_subteam")
    return {"ok": True, "users": list(members)}


def reactions_add(state: EmulatorState, params: Params) -> dict[str, Any]:
    channel = state.channel(params.get("channel"))
    message = state.message(channel, str(params.get("timestamp") or ""))
    name = str(params.get("name") or "").strip(":")
    if not name:
        raise SlackError("invalid_name")
    reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
    reaction = next((r for r in reactions if r["name"] == name), None)
    if reaction is None:
        reaction = {"name": name, "users": [], "count": 0}
        reactions.append(reaction)
    if state.config.bot_user_id in reaction["users"]:
        raise SlackError("already_reacted")
    reaction["users"].append(state.config.bot_user_id)
    reaction["count"] = len(reaction["users"])
    return {"ok": True}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "conversations.list": conversations_list,
    "conversations.info": conversations_info,
    "conversations.create": conversations_create,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.delete": chat_delete,
    "users.info": users_info,
    "users.list": users_list,
    "views.open": views_open,
    "views.update": views_update,
    "views.publish": views_publish,
    "reactions.add": reactions_add,
    "usergroups.users.list": usergroups_users_list,
    "oauth.v2.access": oauth_v2_access,
}
