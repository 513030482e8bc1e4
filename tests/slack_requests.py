"""Signed requests shaped like Slack's, for tests that play the part of Slack itself."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp


class SlackSender:
    def __init__(self, session: aiohttp.ClientSession, url: str, secret: str) -> None:
        self.session = session
        self.url = url
        self.secret = secret

    def _headers(self, body: str, content_type: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        ts = str(int(time.time()))
        sig = hmac.new(self.secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={sig}",
            **(extra or {}),
        }

    async def _post(self, body: str, content_type: str, extra: dict[str, str] | None = None) -> tuple[int, str]:
        async with self.session.post(
            self.url, data=body.encode(), headers=self._headers(body, content_type, extra)
        ) as r:
            return r.status, await r.text()

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        return await self._post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    async def click(self, user: str, channel: str, message: dict[str, Any], action: dict[str, Any]) -> tuple[int, str]:
        return await self.interaction(
            {
                "type": "block_actions",
                "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0SWITCHBD"},
                "api_app_id": "A0SWITCHBD",
                "token": "legacy",
                "container": {
                    "type": "message",
                    "message_ts": message["ts"],
                    "channel_id": channel,
                    "is_ephemeral": False,
                },
                "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:10]}",
                "team": {"id": "T0SWITCHBD", "domain": "switchboard"},
                "channel": {"id": channel, "name": "x"},
                "message": message,
                "actions": [{**action, "block_id": "b", "action_ts": f"{time.time():.6f}"}],
            }
        )

    async def submit_view(self, user: str, view: dict[str, Any], values: dict[str, Any]) -> tuple[int, str]:
        return await self.interaction(
            {
                "type": "view_submission",
                "team": {"id": "T0SWITCHBD", "domain": "switchboard"},
                "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0SWITCHBD"},
                "api_app_id": "A0SWITCHBD",
                "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:10]}",
                "view": {**view, "id": view.get("id", "V123"), "state": {"values": values}},
            }
        )

    async def event(
        self, event: dict[str, Any], event_id: str | None = None, retry: int | None = None
    ) -> tuple[int, str]:
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": "T0SWITCHBD",
                "api_app_id": "A0SWITCHBD",
                "type": "event_callback",
                "event": event,
                "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
                "event_time": int(time.time()),
            }
        )
        extra = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        return await self._post(body, "application/json", extra)

    async def message(self, user: str, channel: str, text: str, thread_ts: str | None = None, **kw: Any) -> str:
        ts = f"{time.time():.6f}"
        event = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
            **({"thread_ts": thread_ts} if thread_ts else {}),
        }
        status, _ = await self.event(event, **kw)
        assert status == 200
        return ts

    async def slash(
        self, user: str, command: str, text: str, channel: str, response_url: str | None = None
    ) -> tuple[int, str]:
        """A slash command as Slack sends it: form-encoded, every value a string."""
        form = {
            "token": "legacy",
            "team_id": "T0SWITCHBD",
            "team_domain": "switchboard",
            "channel_id": channel,
            "channel_name": "x",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0SWITCHBD",
            "is_enterprise_install": "false",
            "response_url": response_url or "https://hooks.slack.com/commands/T0SWITCHBD/1/x",
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:10]}",
        }
        return await self._post(urlencode(form), "application/x-www-form-urlencoded")
