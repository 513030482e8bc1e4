"""Optional multi-workspace install of the Slack app (OAuth v2), with Redis-backed stores.

Off unless SLACK_OAUTH_ENABLED=true. `build(redis)` returns the `AsyncOAuthSettings` to pass as
`AsyncApp(oauth_settings=...)` (then bolt authorizes each request with the installing workspace's bot
token from Redis), or None, in which case the single SLACK_BOT_TOKEN keeps working as before.
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

from .config import DEFAULT_SCOPES, INSTALL_PATH, REDIRECT_PATH, SlackOAuthConfig
from .installation_store import RedisInstallationStore
from .routes import oauth_routes
from .settings import oauth_settings
from .state_store import RedisOAuthStateStore


class OAuthConfigError(RuntimeError):
    """Start-up configuration problem; its message is the one line the operator sees."""


def build(redis: aioredis.Redis, config: SlackOAuthConfig | None = None) -> AsyncOAuthSettings | None:
    """OAuth settings for bolt, or None when the install flow is disabled (the default).

    Disabled but SLACK_CLIENT_ID and SLACK_CLIENT_SECRET both in the environment is refused: bolt's
    `AsyncApp` would then quietly build its own OAuth flow with a file store and ignore SLACK_BOT_TOKEN,
    so every Slack request would fail authorization.
    """
    config = config if config is not None else SlackOAuthConfig()
    if not config.enabled:
        if os.environ.get("SLACK_CLIENT_ID") and os.environ.get("SLACK_CLIENT_SECRET"):
            raise OAuthConfigError(
                "configuration error: SLACK_OAUTH_ENABLED: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set, which "
                "makes slack-bolt replace SLACK_BOT_TOKEN with its own OAuth flow; set SLACK_OAUTH_ENABLED=true "
                "or unset them"
            )
        return None
    return oauth_settings(config, redis)


__all__ = [
    "DEFAULT_SCOPES",
    "INSTALL_PATH",
    "REDIRECT_PATH",
    "OAuthConfigError",
    "RedisInstallationStore",
    "RedisOAuthStateStore",
    "SlackOAuthConfig",
    "build",
    "oauth_routes",
    "oauth_settings",
]
