"""Message responses: a ``response_url`` post or the body of an immediate HTTP answer.

Slack applies both the same way (ephemeral to the user, in the channel, replace or delete the
source message), so one function serves the ``/response/<id>`` endpoint and the desk's handling
of slash-command and interaction answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .params import flag, parse_blocks
from .state import EmulatorState, SlackError
from .webapi import chat_post_message

# Slack's response_url works "up to 5 times within 30 minutes".
MAX_USES = 5
TTL_SECONDS = 30 * 60


@dataclass
class ResponseTarget:
    """Where a response goes: the user who acted, their channel, and the message they acted on."""

    id: str
    channel_id: str
    user_id: str
    message_ts: str | None = None
    is_ephemeral: bool = False
    thread_ts: str | None = None
    expires: float = 0.0
    uses: int = 0


Body = dict[str, Any]


def _content(body: Body) -> tuple[str, list[dict[str, Any]]]:
    text = str(body.get("text") or "")
    blocks = parse_blocks({"blocks": body.get("blocks")}) or []
    if not text and not blocks and not flag(body, "delete_original"):
        raise SlackError("no_text")
    return text, blocks


def _ephemeral_source(state: EmulatorState, target: ResponseTarget) -> dict[str, Any] | None:
    return next(
        (e for e in state.ephemerals if e["message_ts"] == target.message_ts and e["user"] == target.user_id),
        None,
    )


def _post_ephemeral(state: EmulatorState, target: ResponseTarget, body: Body) -> None:
    text, blocks = _content(body)
    state.ephemerals.append(
        {
            "channel": target.channel_id,
            "user": target.user_id,
            "message_ts": state.next_ts(),
            "text": text,
            "blocks": blocks,
            "thread_ts": body.get("thread_ts") or target.thread_ts,
        }
    )


def _post_in_channel(state: EmulatorState, target: ResponseTarget, body: Body) -> None:
    text, blocks = _content(body)
    params: dict[str, Any] = {"channel": target.channel_id, "text": text, "blocks": blocks or None}
    thread_ts = body.get("thread_ts") or target.thread_ts
    if thread_ts:
        params["thread_ts"] = thread_ts
    chat_post_message(state, params)


def _replace(state: EmulatorState, target: ResponseTarget, body: Body) -> None:
    text, blocks = _content(body)
    if target.is_ephemeral:
        source = _ephemeral_source(state, target)
    else:
        channel = state.channels[target.channel_id]
        source = channel.by_ts.get(target.message_ts or "")
    if source is None:
        raise SlackError("message_not_found")
    source["text"] = text
    source["blocks"] = blocks


def _delete(state: EmulatorState, target: ResponseTarget, body: Body) -> None:
    if target.is_ephemeral:
        source = _ephemeral_source(state, target)
        if source is not None:
            state.ephemerals.remove(source)
        return
    channel = state.channels[target.channel_id]
    if target.message_ts and target.message_ts in channel.by_ts:
        state.remove_message(channel, target.message_ts)


MODES: dict[str, Callable[[EmulatorState, ResponseTarget, Body], None]] = {
    "delete_original": _delete,
    "replace_original": _replace,
    "in_channel": _post_in_channel,
    "ephemeral": _post_ephemeral,
}


def mode_of(target: ResponseTarget, body: Body) -> str:
    """Slack's precedence: delete, then replace (only with a source message), then response_type."""
    for key in ("delete_original", "replace_original"):
        if flag(body, key) and target.message_ts:
            return key
    return "in_channel" if body.get("response_type") == "in_channel" else "ephemeral"


def apply_response(state: EmulatorState, target: ResponseTarget, body: Body, *, source: str) -> str:
    """Apply and record one response; returns the mode used. Raises SlackError on bad content."""
    mode = mode_of(target, body)
    record: dict[str, Any] = {"id": target.id, "source": source, "mode": mode, "body": body, "at": time.time()}
    try:
        MODES[mode](state, target, body)
    except SlackError as err:
        record["error"] = err.error
        state.responses.append(record)
        raise
    state.responses.append(record)
    return mode


def use_target(targets: dict[str, ResponseTarget], response_id: str) -> ResponseTarget:
    """Look up a response_url and count the use, enforcing Slack's 5 uses / 30 minutes."""
    target = targets.get(response_id)
    if target is None or time.monotonic() > target.expires:
        raise SlackError("expired_url", status=404)
    if target.uses >= MAX_USES:
        raise SlackError("used_url", status=410)
    target.uses += 1
    return target
