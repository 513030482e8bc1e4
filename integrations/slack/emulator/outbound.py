"""Signed HTTP requests from the emulator back to the gateway, the way Slack's servers send them.

Signing and transport live here, apart from payload shapes and desk logic, so the exact bytes
that were signed are the bytes that were sent (a re-serialisation would break the HMAC) and so
every request and the gateway's answer end up recorded in ``state.outbound`` for assertions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import structlog
from slack_sdk.signature import SignatureVerifier

from .state import EmulatorState

log = structlog.get_logger(__name__)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass
class OutboundRequest:
    """One request to the gateway and its answer; ``status`` 0 means it never got an HTTP answer."""

    kind: str
    url: str
    headers: dict[str, str]
    body: str
    payload: dict[str, Any]
    user: str
    at: float = field(default_factory=time.time)
    status: int = 0
    response_text: str = ""
    response_type: str = ""
    error: str = ""

    def response_json(self) -> Any:
        """The gateway's answer as JSON, or None for an empty/plain-text/non-JSON answer."""
        if not self.response_text.strip():
            return None
        try:
            return json.loads(self.response_text)
        except json.JSONDecodeError:
            return None

    def summary(self) -> dict[str, Any]:
        """What the desk page lists under "sent to gateway"; bodies stay server-side."""
        return {"kind": self.kind, "user": self.user, "status": self.status, "error": self.error, "at": self.at}


def form_body(fields: dict[str, str]) -> str:
    return urlencode(fields)


def interaction_body(payload: dict[str, Any]) -> str:
    """Interactivity posts are a form with one ``payload`` field holding JSON, as Slack does."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})


def json_body(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


class Outbound:
    """The emulator's HTTP client towards the gateway; owns one ClientSession for the app's life."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # trust_env=False: the gateway is on loopback and a CI proxy would swallow the request.
        timeout = aiohttp.ClientTimeout(total=self.state.config.gateway_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sign(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        """Slack's v0 scheme; slack_sdk generates it so verifier and signer cannot drift apart."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        verifier = SignatureVerifier(self.state.config.signing_secret)
        signature = verifier.generate_signature(timestamp=ts, body=body) or ""
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    async def send(
        self,
        kind: str,
        body: str,
        content_type: str,
        payload: dict[str, Any],
        user: str,
        extra_headers: dict[str, str] | None = None,
    ) -> OutboundRequest:
        """Sign, post, and record; never raises for network trouble so a click always leaves a trace."""
        url = self.state.config.gateway_events_url or ""
        headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        headers.update(self.sign(body))
        headers.update(extra_headers or {})
        record = OutboundRequest(kind=kind, url=url, headers=headers, body=body, payload=payload, user=user)
        hub = self.state.sockets
        if hub is not None and hub.connected:
            record.url = "socket-mode"
            record.status, record.response_text = await hub.deliver(kind, payload, self.state.config.gateway_timeout)
            record.response_type = "application/json"
            if record.status == 0:
                record.error = "no ack over the socket in time"
        elif not url:
            record.error = "no gateway_events_url configured"
        elif self._session is None:
            record.error = "emulator app not started (its ClientSession is created on startup)"
        else:
            await self._post(record)
        self.state.outbound.append(record)
        log.debug("slack_emulator.outbound", kind=kind, status=record.status, error=record.error)
        return record

    async def _post(self, record: OutboundRequest) -> None:
        assert self._session is not None
        try:
            async with self._session.post(record.url, data=record.body.encode(), headers=record.headers) as resp:
                record.status = resp.status
                record.response_type = resp.content_type
                record.response_text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Slack treats a timeout or refused connection as a failed delivery; so do we.
            record.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
