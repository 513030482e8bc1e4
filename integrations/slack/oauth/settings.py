"""Turn `SlackOAuthConfig` + Redis into bolt's `AsyncOAuthSettings`.

One place decides the OAuth knobs (Redis stores instead of bolt's file defaults, bot-only lookups,
install/redirect paths) so the gateway and the tests build the very same flow.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

from .config import INSTALL_PATH, REDIRECT_PATH, SlackOAuthConfig
from .installation_store import RedisInstallationStore
from .state_store import RedisOAuthStateStore


def oauth_settings(config: SlackOAuthConfig, redis: aioredis.Redis) -> AsyncOAuthSettings:
    """Settings for `AsyncApp(oauth_settings=...)`; the flow's Web API client is the app's client.

    Bolt hands the app's `AsyncWebClient` to `AsyncOAuthFlow`, so `oauth.v2.access` and `auth.test`
    go to whatever `base_url` that client has (the emulator locally). `user_scopes=()` is explicit
    because bolt would otherwise read SLACK_USER_SCOPES from the environment behind our back.
    """
    if not config.client_id or config.client_secret is None:
        raise ValueError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are required for the OAuth install flow")
    return AsyncOAuthSettings(
        client_id=config.client_id,
        client_secret=config.client_secret.get_secret_value(),
        scopes=list(config.scopes),
        user_scopes=[],
        redirect_uri=config.redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        install_page_rendering_enabled=config.install_page,
        authorization_url=config.authorize_url,
        installation_store=RedisInstallationStore(redis, client_id=config.client_id, key_prefix=config.key_prefix),
        # We ask for no user scopes, so the workspace's bot is all a request ever needs.
        installation_store_bot_only=True,
        state_store=RedisOAuthStateStore(redis, config.state_ttl_s, key_prefix=config.key_prefix),
        state_expiration_seconds=config.state_ttl_s,
    )
