"""Slack installations in Redis: slack_sdk ships file, SQL, SQLite and S3 stores, none for Redis.

Semantics follow slack_sdk's SQLAlchemy store (the reference the file store approximates):

* per workspace (enterprise id + team id, team "none" for org-wide installs) the *latest* bot and the
  latest installation are what `find` returns; "latest" means the highest `installed_at`, so a
  token-rotation re-save (same `installed_at`) overwrites, and an older record never wins;
* the latest installation per installer (`user_id`) is kept too, for user-token lookups;
* with `historical_data_enabled` every save is also kept in a history sorted set (score `installed_at`,
  re-saving the same `installed_at` replaces it, like the SQL upsert);
* deleting one installer's data promotes the next most recent installer's record to "latest".

Each workspace's keys share one Redis Cluster hash tag, and every multi-key write is one Lua script,
so a crash or a concurrent install never leaves "latest" and the history disagreeing.
"""

from __future__ import annotations

import json
import logging
from logging import Logger
from typing import Any

import redis.asyncio as aioredis
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

NONE = "none"

# KEYS: latest, history[, per-installer hash]   ARGV: json, installed_at, keep_history, user_id
_SAVE = """
local function newer(raw, at)
  if not raw then return true end
  return tonumber(at) >= tonumber(cjson.decode(raw)['installed_at'])
end
if newer(redis.call('GET', KEYS[1]), ARGV[2]) then redis.call('SET', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[2], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
if KEYS[3] and newer(redis.call('HGET', KEYS[3], ARGV[4]), ARGV[2]) then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
end
return 1
"""

# KEYS: latest, per-installer hash, history   ARGV: user_id
_DELETE_INSTALLER = """
redis.call('HDEL', KEYS[2], ARGV[1])
for _, raw in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if cjson.decode(raw)['user_id'] == ARGV[1] then redis.call('ZREM', KEYS[3], raw) end
end
local latest = redis.call('GET', KEYS[1])
if latest and cjson.decode(latest)['user_id'] == ARGV[1] then
  local best, best_at = nil, nil
  for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do
    local at = tonumber(cjson.decode(raw)['installed_at'])
    if best_at == nil or at > best_at then best, best_at = raw, at end
  end
  if best then redis.call('SET', KEYS[1], best) else redis.call('DEL', KEYS[1]) end
end
return 1
"""


class RedisInstallationStore(AsyncInstallationStore):
    """`AsyncInstallationStore` over redis-py's asyncio client (bytes or str responses both work)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        client_id: str | None = None,
        key_prefix: str = "sb:slack",
        historical_data_enabled: bool = True,
        logger: Logger | None = None,
    ) -> None:
        self.redis = redis
        self.client_id = client_id
        self.key_prefix = key_prefix
        self.historical_data_enabled = historical_data_enabled
        self._logger = logger or logging.getLogger(__name__)
        self._save_script = redis.register_script(_SAVE)
        self._delete_installer_script = redis.register_script(_DELETE_INSTALLER)

    @property
    def logger(self) -> Logger:
        return self._logger

    # ---- keys ------------------------------------------------------------------------------------

    def _workspace(self, enterprise_id: str | None, team_id: str | None) -> str:
        """`{...}` is the cluster hash tag; the client id keeps two apps sharing a Redis apart."""
        return f"{self.key_prefix}:install:{{{self.client_id or NONE}/{enterprise_id or NONE}/{team_id or NONE}}}"

    def _keys(self, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> str:
        # Like slack_sdk's stores: an org-wide install is found under the enterprise alone.
        return self._workspace(enterprise_id, None if is_enterprise_install else team_id)

    # ---- save ------------------------------------------------------------------------------------

    async def async_save(self, installation: Installation) -> None:
        base = self._workspace(installation.enterprise_id, installation.team_id)
        await self._save_script(
            keys=[f"{base}:installer", f"{base}:installer:history", f"{base}:installer:users"],
            args=[
                _dump(installation.__dict__),
                repr(float(installation.installed_at)),
                "1" if self.historical_data_enabled else "0",
                installation.user_id or NONE,
            ],
        )
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            self.logger.debug("Skipped saving a bot without a bot token")
            return
        base = self._workspace(bot.enterprise_id, bot.team_id)
        await self._save_script(
            keys=[f"{base}:bot", f"{base}:bot:history"],
            args=[_dump(bot.__dict__), repr(float(bot.installed_at)), "1" if self.historical_data_enabled else "0"],
        )

    # ---- find ------------------------------------------------------------------------------------

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        raw = await self.redis.get(f"{self._keys(enterprise_id, team_id, is_enterprise_install)}:bot")
        if raw is None:
            self.logger.debug("No bot installation for enterprise %s, team %s", enterprise_id, team_id)
            return None
        return Bot(**json.loads(raw))

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        base = self._keys(enterprise_id, team_id, is_enterprise_install)
        if user_id is None:
            raw = await self.redis.get(f"{base}:installer")
        else:
            raw = await self.redis.hget(f"{base}:installer:users", user_id)
        if raw is None:
            return None
        installation = Installation(**json.loads(raw))
        if user_id is not None or installation.bot_token is None:
            # A user's own record may carry a bot token a later install replaced
            # (slack_sdk does the same, see bolt-python#664).
            bot = await self.async_find_bot(
                enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
            )
            if bot is not None and bot.bot_token != installation.bot_token:
                installation.bot_id = bot.bot_id
                installation.bot_user_id = bot.bot_user_id
                installation.bot_token = bot.bot_token
                installation.bot_scopes = bot.bot_scopes
                installation.bot_refresh_token = bot.bot_refresh_token
                installation.bot_token_expires_at = bot.bot_token_expires_at
        return installation

    # ---- delete ----------------------------------------------------------------------------------

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        base = self._workspace(enterprise_id, team_id)
        await self.redis.delete(f"{base}:bot", f"{base}:bot:history")

    async def async_delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        base = self._workspace(enterprise_id, team_id)
        keys = [f"{base}:installer", f"{base}:installer:users", f"{base}:installer:history"]
        if user_id is None:
            await self.redis.delete(*keys)
        else:
            await self._delete_installer_script(keys=keys, args=[user_id])

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """`app_uninstalled` / `tokens_revoked` clean-up: the bot and every installer's tokens."""
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)


def _dump(fields: dict[str, Any]) -> str:
    """The model's own attribute names are its constructor's keywords, so `Model(**loads(s))` restores it."""
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)
