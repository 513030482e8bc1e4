"""slack-bolt kept at the edge: one AsyncApp, one aiohttp handler at `/slack/events`.

Bolt verifies Slack's signature (5-minute window) and answers `url_verification` itself; listeners
for the desk's buttons, thread replies and slash commands register on this app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from integrations.webhook.untrusted import UNREADABLE_BODY


def create_bolt_app(
    client: AsyncWebClient, signing_secret: str, oauth_settings: AsyncOAuthSettings | None = None
) -> AsyncApp:
    """With OAuth settings, bolt authorizes each request with the installing workspace's token."""
    return AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=True,
        raise_error_for_unhandled_request=False,
        oauth_settings=oauth_settings,
    )


def events_handler(bolt: AsyncApp, signing_secret: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Check the signature on the raw bytes first: bolt parses the body before verifying it, so an
    unsigned malformed body would otherwise end in a 500 instead of a 401."""
    verifier = SignatureVerifier(signing_secret)

    async def slack_events(request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except UNREADABLE_BODY:
            return web.json_response({"error": "unreadable_body"}, status=400)
        try:
            signed = verifier.is_valid_request(raw, dict(request.headers))
        except (ValueError, OverflowError):  # a timestamp that is no number ("abc", "1e9999"): a 500 before
            signed = False
        if not signed:
            return web.json_response({"error": "invalid_signature"}, status=401)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.json_response({"error": "invalid_utf8"}, status=400)
        bolt_resp = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_resp)

    return slack_events
