"""The JSON shapes Slack sends to an app: interaction payloads, Events API envelopes, slash forms.

Pure functions of the workspace state so tests can assert on shapes without any HTTP, and so
the gateway's bolt handlers see byte-for-byte the structure real Slack produces (documented at
docs.slack.dev/reference/interaction-payloads and /events). Nothing here mutates state.
"""

from __future__ import annotations

import copy
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from .state import EmulatorState, SlackError

APP_ID = "A0SWITCHBD"
TEAM_DOMAIN = "switchboard-emulator"

Json = dict[str, Any]
Raw = str | dict[str, Any] | None


def user_ref(state: EmulatorState, user_id: str) -> Json:
    """Interaction payloads carry this short user object, not the full users.info one."""
    user = state.user(user_id)
    return {"id": user.id, "username": user.name, "name": user.name, "team_id": state.config.team_id}


def team_ref(state: EmulatorState) -> Json:
    return {"id": state.config.team_id, "domain": TEAM_DOMAIN}


def action_ts() -> str:
    now = time.time()
    return f"{now:.6f}"


def event_id() -> str:
    """Slack event ids are ``Ev`` plus upper-case alphanumerics; uniqueness is what dedup relies on."""
    return "Ev" + secrets.token_hex(6).upper()


# ---- finding interactive elements ------------------------------------------------------------


def _elements(block: Json) -> Iterator[Json]:
    """Interactive elements live in actions.elements, section.accessory and input.element."""
    if block.get("type") == "actions":
        yield from (e for e in block.get("elements", []) if isinstance(e, dict))
    for key in ("accessory", "element"):
        if isinstance(block.get(key), dict):
            yield block[key]


def find_element(blocks: list[Json], action_id: str) -> tuple[str, Json]:
    """The (block_id, element) that owns ``action_id``; Slack generates a block_id when absent."""
    for index, block in enumerate(blocks):
        for element in _elements(block):
            if element.get("action_id") == action_id:
                return str(block.get("block_id") or f"b{index}"), element
    raise SlackError("action_not_found")


def _options(element: Json) -> Iterator[Json]:
    yield from element.get("options", [])
    for group in element.get("option_groups", []):
        yield from group.get("options", [])


def pick_option(element: Json, raw: Raw) -> Json | None:
    """Resolve a value (what the desk and tests pass) to the full option object Slack sends."""
    if raw is None or isinstance(raw, dict):
        return raw
    for option in _options(element):
        if option.get("value") == raw:
            return copy.deepcopy(option)
    raise SlackError("invalid_option", option=raw)


# ---- block_actions ---------------------------------------------------------------------------


def _button(element: Json, raw: Raw) -> Json:
    out: Json = {"type": "button", "text": copy.deepcopy(element.get("text", {}))}
    out["value"] = raw if isinstance(raw, str) else element.get("value", "")
    if element.get("style"):
        out["style"] = element["style"]
    return out


def _static_select(element: Json, raw: Raw) -> Json:
    return {"type": element["type"], "selected_option": pick_option(element, raw)}


def _users_select(element: Json, raw: Raw) -> Json:
    return {"type": "users_select", "selected_user": raw}


# One builder per element type, so supporting a new element is one line.
ACTION_BUILDERS: dict[str, Callable[[Json, Raw], Json]] = {
    "button": _button,
    "static_select": _static_select,
    "overflow": _static_select,
    "radio_buttons": _static_select,
    "users_select": _users_select,
}


def action_entry(block_id: str, element: Json, raw: Raw) -> Json:
    builder = ACTION_BUILDERS.get(str(element.get("type")))
    if builder is None:
        raise SlackError("unsupported_element", element_type=element.get("type"))
    entry = builder(element, raw)
    entry.update(action_id=element["action_id"], block_id=block_id, action_ts=action_ts())
    return entry


def block_actions(
    state: EmulatorState,
    *,
    user_id: str,
    channel_id: str,
    message: Json,
    is_ephemeral: bool,
    action: Json,
    trigger_id: str,
    response_url: str,
) -> Json:
    """A click on a message component, shaped like docs.slack.dev's block_actions payload."""
    channel = state.channels[channel_id]
    payload: Json = {
        "type": "block_actions",
        "user": user_ref(state, user_id),
        "api_app_id": APP_ID,
        "token": state.config.verification_token,
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id,
        "team": team_ref(state),
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel.name},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    if not is_ephemeral:
        # Slack omits the message body for ephemeral sources; the app only gets the container.
        payload["message"] = copy.deepcopy(message)
    return payload


# ---- view_submission -------------------------------------------------------------------------


def _text_value(element: Json, raw: Raw) -> Json:
    return {"type": element["type"], "value": raw if raw is None else str(raw)}


VALUE_BUILDERS: dict[str, Callable[[Json, Raw], Json]] = {
    "plain_text_input": _text_value,
    "email_text_input": _text_value,
    "number_input": _text_value,
    "url_text_input": _text_value,
    "static_select": _static_select,
    "radio_buttons": _static_select,
    "users_select": _users_select,
}


def _lookup(values: dict[str, Any], block_id: str, action_id: str) -> Raw:
    """Accept Slack's ``{block_id: {action_id: v}}`` or the flat ``{block_id: v}``/``{action_id: v}``.

    Block ids win over action ids because apps often reuse one action_id ("value") in every block.
    """
    nested = values.get(block_id)
    if isinstance(nested, dict) and "type" not in nested:
        return nested.get(action_id)
    if block_id in values:
        return nested
    return values.get(action_id)


def view_state(view: Json, values: dict[str, Any]) -> Json:
    """state.values for every input block, unfilled ones included with null like Slack does."""
    out: Json = {}
    for index, block in enumerate(view.get("blocks", [])):
        element = block.get("element") if block.get("type") == "input" else None
        if not isinstance(element, dict) or "action_id" not in element:
            continue
        builder = VALUE_BUILDERS.get(str(element.get("type")))
        if builder is None:
            continue
        block_id = str(block.get("block_id") or f"b{index}")
        raw = _lookup(values, block_id, element["action_id"])
        if isinstance(raw, dict) and "type" in raw:
            out.setdefault(block_id, {})[element["action_id"]] = raw
            continue
        out.setdefault(block_id, {})[element["action_id"]] = builder(element, raw if raw != "" else None)
    return {"values": out}


def view_submission(state: EmulatorState, *, user_id: str, view: Json, values: dict[str, Any], trigger_id: str) -> Json:
    submitted = copy.deepcopy(view)
    submitted["state"] = view_state(view, values)
    return {
        "type": "view_submission",
        "team": team_ref(state),
        "user": user_ref(state, user_id),
        "api_app_id": APP_ID,
        "token": state.config.verification_token,
        "trigger_id": trigger_id,
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


# ---- Events API and slash commands -----------------------------------------------------------


def message_event(state: EmulatorState, channel_id: str, message: Json) -> Json:
    """The ``message`` event a channel post produces (message.channels / message.groups)."""
    event: Json = {
        "client_msg_id": message.get("client_msg_id") or str(uuid.uuid4()),
        "type": "message",
        "text": message.get("text", ""),
        "user": message.get("user", ""),
        "ts": message["ts"],
        "team": state.config.team_id,
        "channel": channel_id,
        "event_ts": message["ts"],
        "channel_type": "group" if state.channels[channel_id].is_private else "channel",
    }
    for key in ("thread_ts", "parent_user_id", "blocks"):
        if key in message:
            event[key] = copy.deepcopy(message[key])
    return event


def app_home_opened(state: EmulatorState, user_id: str) -> Json:
    event: Json = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id[1:],
        "tab": "home",
        "event_ts": action_ts(),
    }
    home = state.home_views.get(user_id)
    if home is not None:
        event["view"] = copy.deepcopy(home)
    return event


def event_callback(state: EmulatorState, event: Json, new_event_id: str) -> Json:
    return {
        "token": state.config.verification_token,
        "team_id": state.config.team_id,
        "context_team_id": state.config.team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": new_event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": state.config.team_id,
                "user_id": state.config.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def slash_form(
    state: EmulatorState,
    *,
    command: str,
    text: str,
    user_id: str,
    channel_id: str,
    trigger_id: str,
    response_url: str,
) -> dict[str, str]:
    """Slash commands arrive form-encoded, every value a string, exactly these keys."""
    return {
        "token": state.config.verification_token,
        "team_id": state.config.team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": state.channels[channel_id].name,
        "user_id": user_id,
        "user_name": state.user(user_id).name,
        "command": command,
        "text": escaped(state, text),
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


_MENTION = re.compile(r"(?<![<\w])([@#])([a-z0-9][a-z0-9._-]*)", re.IGNORECASE)


def escaped(state: EmulatorState, text: str) -> str:
    """What Slack sends for a command registered with "Escape channels, users, and links" (the manifest sets
    it): `@bob` as `<@U0BOB|bob>`, `#general` as `<#C…|general>`, for members and channels that exist; any
    other `@` or `#` word as typed. Passed through raw, `capacity @bob 2` worked against nothing but this
    emulator's desk page, and was refused there.

    >>> from .config import EmulatorConfig, EmulatedUser
    >>> state = EmulatorState(EmulatorConfig(users=[EmulatedUser(id="U0BOB", name="bob")], channels=["general"]))
    >>> escaped(state, "capacity @bob 2 in #general, not @nobody, <@U0BOB> or a@bob.com")
    'capacity <@U0BOB|bob> 2 in <#CDFE2DB7497|general>, not @nobody, <@U0BOB> or a@bob.com'
    """
    users = {u.name.lower(): u.id for u in state.users.values() if not u.is_bot}
    channels = {c.name: cid for cid, c in state.channels.items()}

    def one(m: re.Match[str]) -> str:
        sigil, name = m.group(1), m.group(2)
        if sigil == "@" and name.lower() in users:
            return f"<@{users[name.lower()]}|{name}>"
        if sigil == "#" and name.lower() in channels:
            return f"<#{channels[name.lower()]}|{name.lower()}>"
        return m.group(0)

    return _MENTION.sub(one, text)
