"""RedisInstallationStore / RedisOAuthStateStore semantics against a real Redis, and the OAuth config.

The reference is slack_sdk's SQLAlchemy store: latest by `installed_at`, per-installer lookups with the
newest bot token overlaid, history kept, org-wide installs found under the enterprise alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import cast

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr, ValidationError
from slack_sdk.oauth.installation_store.models.installation import Installation

from integrations.slack.oauth import (
    DEFAULT_SCOPES,
    OAuthConfigError,
    RedisInstallationStore,
    RedisOAuthStateStore,
    SlackOAuthConfig,
    build,
)

T = "T0AAA"


def _inst(user: str, token: str, at: float, team: str | None = T, **kw: object) -> Installation:
    return Installation(
        app_id="A1",
        team_id=team,
        team_name="Acme",
        bot_token=token,
        bot_id="B1",
        bot_user_id="U0BOT",
        bot_scopes="chat:write,users:read",
        user_id=user,
        installed_at=at,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(redis: aioredis.Redis) -> RedisInstallationStore:
    return RedisInstallationStore(redis, client_id="111.222")


async def test_round_trip_keeps_every_field(store: RedisInstallationStore) -> None:
    original = _inst(
        "U1",
        "xoxb-1",
        1000.25,
        user_token="xoxp-1",
        user_scopes="search:read",
        bot_refresh_token="xoxe-1",
        bot_token_expires_at=5000,
        custom_values={"plan": "pro"},
    )
    await store.async_save(original)
    found = await store.async_find_installation(enterprise_id=None, team_id=T)
    assert found is not None and found.__dict__ == original.__dict__
    bot = await store.async_find_bot(enterprise_id=None, team_id=T)
    assert bot is not None and bot.__dict__ == original.to_bot().__dict__
    assert bot.bot_scopes == ["chat:write", "users:read"] and bot.installed_at == 1000.25


async def test_latest_wins_by_installed_at_and_history_is_kept(
    store: RedisInstallationStore, redis: aioredis.Redis
) -> None:
    await store.async_save(_inst("U1", "xoxb-1", 1000.0))
    await store.async_save(_inst("U2", "xoxb-2", 2000.0))
    await store.async_save(_inst("U1", "xoxb-old", 500.0))  # late, older record: never the latest
    latest = await store.async_find_installation(enterprise_id=None, team_id=T)
    assert latest is not None and (latest.user_id, latest.bot_token) == ("U2", "xoxb-2")
    bot = await store.async_find_bot(enterprise_id=None, team_id=T)
    assert bot is not None and bot.bot_token == "xoxb-2"
    (history,) = await redis.keys("*installer:history")
    assert await redis.zcard(history) == 3
    # A token-rotation re-save keeps installed_at: it replaces, in "latest" and in history.
    await store.async_save(_inst("U2", "xoxb-2-rotated", 2000.0))
    bot = await store.async_find_bot(enterprise_id=None, team_id=T)
    assert bot is not None and bot.bot_token == "xoxb-2-rotated"
    assert await redis.zcard(history) == 3


async def test_per_user_lookup_gets_the_newest_bot_token(store: RedisInstallationStore) -> None:
    await store.async_save(_inst("U1", "xoxb-1", 1000.0, user_token="xoxp-u1"))
    await store.async_save(_inst("U2", "xoxb-2", 2000.0))
    mine = await store.async_find_installation(enterprise_id=None, team_id=T, user_id="U1")
    assert mine is not None and (mine.user_token, mine.bot_token) == ("xoxp-u1", "xoxb-2")
    assert await store.async_find_installation(enterprise_id=None, team_id=T, user_id="U9") is None


async def test_deleting_an_installer_promotes_the_previous_one(
    store: RedisInstallationStore, redis: aioredis.Redis
) -> None:
    await store.async_save(_inst("U1", "xoxb-1", 1000.0))
    await store.async_save(_inst("U2", "xoxb-2", 2000.0))
    await store.async_delete_installation(enterprise_id=None, team_id=T, user_id="U2")
    latest = await store.async_find_installation(enterprise_id=None, team_id=T)
    assert latest is not None and latest.user_id == "U1"
    (history,) = await redis.keys("*installer:history")
    assert [json.loads(cast(bytes, m))["user_id"] for m in await redis.zrange(history, 0, -1)] == ["U1"]
    await store.async_delete_installation(enterprise_id=None, team_id=T, user_id="U1")
    assert await store.async_find_installation(enterprise_id=None, team_id=T) is None
    assert await store.async_find_bot(enterprise_id=None, team_id=T) is not None  # bots are separate


async def test_delete_all_and_workspaces_are_isolated(store: RedisInstallationStore, redis: aioredis.Redis) -> None:
    await store.async_save(_inst("U1", "xoxb-1", 1000.0))
    await store.async_save(_inst("U1", "xoxb-other", 1000.0, team="T0BBB"))
    other_app = RedisInstallationStore(redis, client_id="333.444")
    assert await other_app.async_find_bot(enterprise_id=None, team_id=T) is None
    await store.async_delete_all(enterprise_id=None, team_id=T)
    assert await store.async_find_bot(enterprise_id=None, team_id=T) is None
    assert await store.async_find_installation(enterprise_id=None, team_id=T, user_id="U1") is None
    other = await store.async_find_bot(enterprise_id=None, team_id="T0BBB")
    assert other is not None and other.bot_token == "xoxb-other"
    assert len(await redis.keys("*T0AAA*")) == 0


async def test_org_wide_install_is_found_under_the_enterprise(store: RedisInstallationStore) -> None:
    await store.async_save(_inst("U1", "xoxb-org", 1000.0, team=None, enterprise_id="E1", is_enterprise_install=True))
    bot = await store.async_find_bot(enterprise_id="E1", team_id="T0ANY", is_enterprise_install=True)
    assert bot is not None and bot.bot_token == "xoxb-org"
    assert await store.async_find_bot(enterprise_id="E1", team_id="T0ANY") is None


async def test_no_history_mode(redis: aioredis.Redis) -> None:
    store = RedisInstallationStore(redis, historical_data_enabled=False)
    await store.async_save(_inst("U1", "xoxb-1", 1000.0))
    await store.async_save(_inst("U1", "xoxb-2", 2000.0))
    bot = await store.async_find_bot(enterprise_id=None, team_id=T)
    assert bot is not None and bot.bot_token == "xoxb-2"
    assert await redis.keys("*history*") == []


# ---- state store ----------------------------------------------------------------------------------


async def test_state_is_single_use_even_when_raced(redis: aioredis.Redis) -> None:
    states = RedisOAuthStateStore(redis)
    state = await states.async_issue()
    assert len(state) >= 32 and state != await states.async_issue()
    results = await asyncio.gather(*(states.async_consume(state) for _ in range(20)))
    assert results.count(True) == 1
    assert await states.async_consume("") is False
    assert await states.async_consume("never-issued") is False


async def test_state_expires(redis: aioredis.Redis) -> None:
    states = RedisOAuthStateStore(redis, expiration_seconds=1)
    state = await states.async_issue()
    started = time.monotonic()
    await asyncio.sleep(1.1)
    assert time.monotonic() - started >= 1.0
    assert await states.async_consume(state) is False


# ---- config ---------------------------------------------------------------------------------------


async def test_build_is_off_by_default(redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_OAUTH_ENABLED", raising=False)
    assert build(redis) is None
    assert build(redis, SlackOAuthConfig(enabled=False, client_id="1.2")) is None
    # Off, yet bolt would see client credentials and swap the bot token for its own file-based flow.
    monkeypatch.setenv("SLACK_CLIENT_ID", "1.2")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "x")
    with pytest.raises(OAuthConfigError, match="SLACK_OAUTH_ENABLED"):
        build(redis)


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_OAUTH_ENABLED", "true")
    monkeypatch.setenv("SLACK_CLIENT_ID", "111.222")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("SLACK_SCOPES", "chat:write, commands")
    monkeypatch.setenv("SLACK_OAUTH_REDIRECT_URI", "https://sb.example/slack/oauth_redirect")
    config = SlackOAuthConfig()
    assert config.scopes == ("chat:write", "commands")
    assert "s3cret" not in repr(config) and config.secret_values() == ["s3cret"]
    monkeypatch.delenv("SLACK_SCOPES")
    assert SlackOAuthConfig().scopes == DEFAULT_SCOPES


def test_config_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValidationError, match="SLACK_CLIENT_SECRET is required"):
        SlackOAuthConfig(enabled=True, client_id="1.2")
    with pytest.raises(ValidationError, match="SLACK_CLIENT_ID is required"):
        SlackOAuthConfig(enabled=True)
    with pytest.raises(ValidationError, match="https://"):
        SlackOAuthConfig(redirect_uri="slack.example/cb")


async def test_settings_use_the_redis_stores(redis: aioredis.Redis) -> None:
    settings = build(
        redis, SlackOAuthConfig(enabled=True, client_id="1.2", client_secret=SecretStr("x"), state_ttl_s=120)
    )
    assert settings is not None
    assert isinstance(settings.installation_store, RedisInstallationStore)
    assert isinstance(settings.state_store, RedisOAuthStateStore) and settings.state_store.expiration_seconds == 120
    assert settings.scopes == list(DEFAULT_SCOPES) and settings.user_scopes == []
    assert settings.installation_store_bot_only is True
    assert (settings.install_path, settings.redirect_uri_path) == ("/slack/install", "/slack/oauth_redirect")
