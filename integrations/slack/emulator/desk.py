"""What a person (or a test) does in the emulated Slack client, turned into what Slack sends.

The desk page's JSON endpoints and the tests call the same methods, so a browser click and a
test's ``await desk.click(...)`` exercise one code path, and the gateway sees the same signed
requests it would get from real Slack (block_actions, view_submission, events, slash commands).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from . import payloads
from .outbound import FORM, JSON, Outbound, OutboundRequest, form_body, interaction_body, json_body
from .responses import TTL_SECONDS, ResponseTarget, apply_response, use_target
from .state import EmulatorState, SlackError
from .webapi import store_view

DEFAULT_USER = "U0ALICE"


class Desk:
    """The emulated Slack client: one per emulator app, sharing its state and HTTP session."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.outbound = Outbound(state)
        self.targets: dict[str, ResponseTarget] = {}
        self.events: dict[str, tuple[str, str]] = {}  # event_id -> (body, user) for retries
        self.prefix = "/"
        self.origin: str | None = None

    # ---- lifecycle and addressing ------------------------------------------------------------

    async def start(self) -> None:
        await self.outbound.start()

    async def close(self) -> None:
        await self.outbound.close()

    def base_url(self) -> str:
        """Absolute URL of the emulator root, for response_url; configured, learned, or guessed."""
        if self.state.config.public_url:
            return self.state.config.public_url.rstrip("/") + "/"
        origin = self.origin
        if origin is None:
            parts = urlsplit(self.state.config.gateway_events_url or "http://127.0.0.1")
            origin = f"{parts.scheme}://{parts.netloc}"
        return origin + self.prefix

    def _response_target(self, **fields: Any) -> str:
        target = ResponseTarget(id=uuid.uuid4().hex, expires=time.monotonic() + TTL_SECONDS, **fields)
        self.targets[target.id] = target
        return f"{self.base_url()}response/{target.id}"

    # ---- actions -----------------------------------------------------------------------------

    async def click(
        self,
        channel: str,
        message_ts: str,
        action_id: str,
        user: str = DEFAULT_USER,
        value: str | None = None,
        selected_option: str | dict[str, Any] | None = None,
    ) -> int:
        """Click a button or pick a menu option on a message; returns the gateway's HTTP status."""
        found = self.state.channel(channel)
        self.state.user(user)
        message, is_ephemeral = self._source_message(found.id, message_ts, user)
        block_id, element = payloads.find_element(message.get("blocks") or [], action_id)
        raw = selected_option if selected_option is not None else value
        action = payloads.action_entry(block_id, element, raw)
        response_url = self._response_target(
            channel_id=found.id,
            user_id=user,
            message_ts=message_ts,
            is_ephemeral=is_ephemeral,
            # Only a reply lives in a thread; a parent's thread_ts is its own ts.
            thread_ts=message.get("thread_ts") if message.get("thread_ts") != message_ts else None,
        )
        payload = payloads.block_actions(
            self.state,
            user_id=user,
            channel_id=found.id,
            message=message,
            is_ephemeral=is_ephemeral,
            action=action,
            trigger_id=self.state.issue_trigger(user),
            response_url=response_url,
        )
        record = await self.outbound.send("block_actions", interaction_body(payload), FORM, payload, user)
        self._immediate_reply(record, response_url)
        return record.status

    def _source_message(self, channel_id: str, ts: str, user: str) -> tuple[dict[str, Any], bool]:
        channel = self.state.channels[channel_id]
        if ts in channel.by_ts:
            return channel.by_ts[ts], False
        for ephemeral in self.state.ephemerals:
            if ephemeral["message_ts"] == ts and ephemeral["user"] == user:
                return {"ts": ts, "text": ephemeral["text"], "blocks": ephemeral["blocks"]}, True
        raise SlackError("message_not_found")

    async def post_as_user(
        self, channel: str, text: str, user: str = DEFAULT_USER, thread_ts: str | None = None
    ) -> str:
        """Store a human's message and send its ``message`` event; returns the new message's ts."""
        found = self.state.channel(channel)
        self.state.user(user)
        message: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": self.state.next_ts(),
            "team": self.state.config.team_id,
            "client_msg_id": str(uuid.uuid4()),
        }
        self.state.add_message(found, message, thread_ts)
        await self._send_event(payloads.message_event(self.state, found.id, message), user)
        return str(message["ts"])

    async def open_home(self, user: str = DEFAULT_USER) -> int:
        """The user opens the app's Home tab: Slack sends ``app_home_opened``."""
        self.state.user(user)
        record = await self._send_event(payloads.app_home_opened(self.state, user), user)
        return record.status

    async def _send_event(self, event: dict[str, Any], user: str) -> OutboundRequest:
        new_id = payloads.event_id()
        body = json_body(payloads.event_callback(self.state, event, new_id))
        self.events[new_id] = (body, user)
        return await self.outbound.send("event_callback", body, JSON, json.loads(body), user)

    async def resend_event(self, event_id: str, retry_num: int = 1, reason: str = "http_timeout") -> int:
        """Slack's retry: the identical body, freshly signed, with X-Slack-Retry-Num/-Reason."""
        if event_id not in self.events:
            raise KeyError(f"no event {event_id!r} was sent by this emulator")
        body, user = self.events[event_id]
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": reason}
        record = await self.outbound.send("event_callback", body, JSON, json.loads(body), user, headers)
        return record.status

    async def slash(self, command: str, text: str = "", user: str = DEFAULT_USER, channel: str = "general") -> int:
        """Run ``/command text`` in a channel; an immediate text/blocks answer is shown to the user."""
        found = self.state.channel(channel)
        self.state.user(user)
        response_url = self._response_target(channel_id=found.id, user_id=user)
        form = payloads.slash_form(
            self.state,
            command=command if command.startswith("/") else "/" + command,
            text=text,
            user_id=user,
            channel_id=found.id,
            trigger_id=self.state.issue_trigger(user),
            response_url=response_url,
        )
        record = await self.outbound.send("slash_command", form_body(form), FORM, dict(form), user)
        self._immediate_reply(record, response_url)
        return record.status

    def _immediate_reply(self, record: OutboundRequest, response_url: str) -> None:
        """An HTTP 200 body with text/blocks is a message response, like a response_url post."""
        if record.status != 200 or not record.response_text.strip():
            return
        body = record.response_json()
        if not isinstance(body, dict):
            # Slack shows a plain-text slash-command answer as an ephemeral message.
            body = {"text": record.response_text} if record.kind == "slash_command" else {}
        if not (body.get("text") or body.get("blocks")):
            return
        target = self.targets[response_url.rsplit("/", 1)[-1]]
        apply_response(self.state, target, body, source="immediate")

    def respond(self, response_id: str, body: dict[str, Any]) -> str:
        """A POST to response_url; returns the mode applied (ephemeral, in_channel, replace..., delete...)."""
        return apply_response(self.state, use_target(self.targets, response_id), body, source="response_url")

    # ---- modals ------------------------------------------------------------------------------

    def open_modal(self, user: str) -> dict[str, Any] | None:
        """The modal on top of the user's stack (views opened with foreign triggers show to all)."""
        for view in reversed(list(self.state.views.values())):
            if view["type"] == "modal" and view["id"] not in self.state.closed_views:
                if view["user_id"] in ("", user):
                    return view
        return None

    async def submit_view(self, view_id: str, values: dict[str, Any], user: str | None = None) -> int:
        """Submit a modal; then apply the gateway's response_action (errors/update/push/clear)."""
        view = self._live_view(view_id)
        acting = user or view["user_id"] or DEFAULT_USER
        payload = payloads.view_submission(
            self.state,
            user_id=acting,
            view=view,
            values=values,
            trigger_id=self.state.issue_trigger(acting),
        )
        record = await self.outbound.send("view_submission", interaction_body(payload), FORM, payload, acting)
        self.state.view_errors.pop(view_id, None)
        if record.status != 200:
            # Slack keeps the modal open and shows a generic connection error.
            self.state.view_errors[view_id] = {"": f"We had some trouble connecting ({record.status or record.error})"}
            return record.status
        answer = record.response_json()
        action = str(answer.get("response_action", "")) if isinstance(answer, dict) else ""
        RESPONSE_ACTIONS.get(action, Desk._close_current)(self, view, answer if isinstance(answer, dict) else {})
        self.state.local_changes += 1
        return record.status

    def close_view(self, view_id: str, user: str | None = None) -> None:
        """The user dismisses the modal (the desk's Cancel button)."""
        view = self._live_view(view_id)
        self.state.closed_views.add(view["id"])
        self.state.local_changes += 1

    def _live_view(self, view_id: str) -> dict[str, Any]:
        view = self.state.views.get(view_id)
        if view is None or view_id in self.state.closed_views:
            raise SlackError("view_not_found")
        return view

    def _close_current(self, view: dict[str, Any], answer: dict[str, Any]) -> None:
        self.state.closed_views.add(view["id"])

    def _clear(self, view: dict[str, Any], answer: dict[str, Any]) -> None:
        root = view.get("root_view_id") or view["id"]
        for other in self.state.views.values():
            if (other.get("root_view_id") or other["id"]) == root:
                self.state.closed_views.add(other["id"])

    def _errors(self, view: dict[str, Any], answer: dict[str, Any]) -> None:
        errors = answer.get("errors") or {}
        self.state.view_errors[view["id"]] = {str(k): str(v) for k, v in dict(errors).items()}

    def _update(self, view: dict[str, Any], answer: dict[str, Any]) -> None:
        new_view = answer.get("view")
        if isinstance(new_view, dict):
            kept = {k: view[k] for k in ("root_view_id", "previous_view_id")}
            store_view(self.state, copy.deepcopy(new_view), view["id"], view["user_id"])
            self.state.views[view["id"]].update(kept)

    def _push(self, view: dict[str, Any], answer: dict[str, Any]) -> None:
        new_view = answer.get("view")
        if isinstance(new_view, dict):
            stored = store_view(self.state, copy.deepcopy(new_view), self.state.next_id("V"), view["user_id"])
            self.state.views[stored["id"]].update(
                root_view_id=view.get("root_view_id") or view["id"], previous_view_id=view["id"]
            )


RESPONSE_ACTIONS: dict[str, Callable[[Desk, dict[str, Any], dict[str, Any]], None]] = {
    "errors": Desk._errors,
    "update": Desk._update,
    "push": Desk._push,
    "clear": Desk._clear,
}
