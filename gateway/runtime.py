"""Wiring: turn `Settings` into connected parts (Redis, policy, desk, scorer, pipeline).

Kept apart from the aiohttp app and the CLI so tests, `serve` and the single-role processes all build
the gateway the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

from gateway.bot_followup import BotFollowUp
from gateway.channels import ChannelConfigs, channel_configs_or_error, senders
from gateway.desk_ops import DeskOps
from gateway.domain import ChannelKind
from gateway.durability import warn_if_forgetful
from gateway.embedded_redis import EmbeddedRedis
from gateway.erasure import Eraser
from gateway.identity import Identity
from gateway.pipeline import Pipeline
from gateway.policy_store import PolicyStore
from gateway.ports import Automation, CustomerChannel
from gateway.redis_conn import redis_client, round_trip_client
from gateway.retries import DeliveryRetries
from gateway.settings import ConfigError, Settings
from gateway.sla import SlaTracker
from gateway.store import ConversationStore
from integrations.automation.bot import AnswerBot
from integrations.automation.kb import KnowledgeBase, KnowledgeBaseError, load_kb
from integrations.automation.webhook import WebhookAutomation
from integrations.slack.desk import SlackDesk, make_client, slack_session
from integrations.slack.emulator import EmulatorConfig
from integrations.slack.oauth import OAuthConfigError
from integrations.slack.oauth import build as build_oauth
from integrations.slack.pacing import ChannelPacer
from integrations.webhook.callback import ApiCallbackChannel
from learners.service import LearnerScorer
from router.policy import Policy, PolicyError, load_policy

log = structlog.get_logger(__name__)

EMULATOR_TOKEN = "xoxb-emulator"
OUTSIDE_CALL_S = 60
STARTUP_RETRIES = 6
"""Bounded: a process manager restarting us beats hanging forever on a wrong REDIS_URL."""


@dataclass
class SlackSetup:
    """How this process reaches Slack; `emulator` is set when the gateway must mount its own."""

    token: str
    signing_secret: str
    api_url: str | None
    emulator: EmulatorConfig | None = None


@dataclass
class Runtime:
    settings: Settings
    redis: aioredis.Redis
    policy: Policy
    policies: PolicyStore
    store: ConversationStore
    slack: SlackSetup
    client: AsyncWebClient
    desk: SlackDesk
    session: aiohttp.ClientSession
    pipeline: Pipeline
    ops: DeskOps
    sla: SlaTracker
    api_secret: str
    oauth: AsyncOAuthSettings | None = None
    channel_configs: ChannelConfigs = field(default_factory=ChannelConfigs)
    embedded: EmbeddedRedis | None = None
    closers: list[object] = field(default_factory=list)

    async def close(self) -> None:
        await self.session.close()
        if self.client.session is not None:
            await self.client.session.close()
        if self.pipeline.round_trips is not None:
            await self.pipeline.round_trips.aclose()
        await self.redis.aclose()
        if self.embedded is not None:
            await self.embedded.stop()


def slack_setup(settings: Settings, policy: Policy) -> SlackSetup:
    if settings.slack_configured:
        assert settings.slack_signing_secret is not None
        return SlackSetup(
            # With OAuth the token comes from the installation store (see `install_token`).
            token=settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else "",
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            api_url=settings.slack_api_url,
        )
    secret = (settings.slack_signing_secret or settings.ensure_local_secret("slack_signing")).get_secret_value()
    local = f"http://127.0.0.1:{settings.port}"
    return SlackSetup(
        token=EMULATOR_TOKEN,
        signing_secret=secret,
        api_url=settings.slack_api_url or f"{local}/_slack/api/",
        emulator=EmulatorConfig(
            channels=sorted({"general", *policy.channels()}),
            gateway_events_url=f"{local}/slack/events",
            signing_secret=secret,
            bot_token=EMULATOR_TOKEN,
        ),
    )


async def connect_redis(settings: Settings, allow_embedded: bool) -> tuple[aioredis.Redis, EmbeddedRedis | None]:
    if settings.redis_url:
        client = redis_client(settings.redis_url)
        for attempt in range(STARTUP_RETRIES):
            try:
                await client.ping()
                await warn_if_forgetful(client)
                return client, None
            except (RedisError, OSError) as exc:
                if attempt == STARTUP_RETRIES - 1:
                    await client.aclose()
                    raise ConfigError(f"configuration error: REDIS_URL: cannot connect ({exc})") from None
                log.warning("redis_not_ready", attempt=attempt + 1, error=str(exc))
                await asyncio.sleep(min(0.25 * 2**attempt, 2.0))
    if not allow_embedded:
        raise ConfigError(
            "configuration error: REDIS_URL: required for the separate web/worker/learner processes "
            "(use `switchboard serve` for the all-in-one local mode)"
        )
    embedded = EmbeddedRedis(settings.data_dir)
    await embedded.start()
    return embedded.client(), embedded


async def install_token(rt: Runtime) -> bool:
    """OAuth mode: the desk posts with the bot token the home workspace installed, once it exists."""
    if not (rt.settings.slack_oauth_enabled and rt.settings.slack_team_id and rt.oauth is not None):
        return False
    store = rt.oauth.installation_store
    bot = await store.async_find_bot(enterprise_id=None, team_id=rt.settings.slack_team_id)
    if bot is None or not bot.bot_token:
        log.warning("slack_not_installed", team_id=rt.settings.slack_team_id, install_path="/slack/install")
        return False
    rt.client.token = bot.bot_token  # the desk's poster reads the client's
    return True


def knowledge_base(settings: Settings) -> KnowledgeBase | None:
    """Read with the policy file, before Redis or any HTTP session is opened: a bad file found later
    left an "Unclosed client session" warning under the one-line error."""
    if settings.automation != "builtin":
        return None
    try:
        return load_kb(settings.kb_file)
    except KnowledgeBaseError as exc:
        raise ConfigError(f"configuration error: SWITCHBOARD_KB_FILE: {exc}") from None


def make_automation(
    settings: Settings, policies: PolicyStore, session: aiohttp.ClientSession, kb: KnowledgeBase | None = None
) -> Automation | None:
    """Table of automation back-ends; `off` routes everything to humans. The built-in bot reads its
    hand-off rules from the live policy on every call, so `/switchboard` changes reach it too."""
    if settings.automation == "webhook":
        assert settings.bot_webhook_url and settings.bot_webhook_secret
        return WebhookAutomation(settings.bot_webhook_url, settings.bot_webhook_secret.get_secret_value(),
                                 session=session)
    if settings.automation == "builtin":
        return AnswerBot(kb if kb is not None else knowledge_base(settings), policies)
    return None


def _round_trips(settings: Settings, embedded: EmbeddedRedis | None) -> aioredis.Redis | None:
    """The worker's lean pool, to the same server as the main one (none for the in-process fallback store)."""
    if settings.redis_url:
        return round_trip_client(settings.redis_url)
    if embedded is not None and not embedded.is_fake and embedded.url:
        return round_trip_client(embedded.url)
    return None


async def build_runtime(settings: Settings, allow_embedded: bool = True) -> Runtime:
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        raise ConfigError(f"configuration error: SWITCHBOARD_POLICY_FILE: {exc}") from None
    channel_configs = channel_configs_or_error()  # before anything is opened: a bad value is one line
    kb = knowledge_base(settings)
    redis, embedded = await connect_redis(settings, allow_embedded)
    policies = PolicyStore(redis)
    policy = await policies.bootstrap(policy)
    slack = slack_setup(settings, policy)
    try:
        oauth = build_oauth(redis)
    except OAuthConfigError as exc:
        raise ConfigError(str(exc)) from None
    # A cap for every outside call that sets no time limit of its own (each channel sets a shorter one).
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=OUTSIDE_CALL_S))
    client = make_client(slack.token, slack.api_url, session=slack_session())
    desk = SlackDesk(
        client, create_missing=slack.emulator is not None, skills=policies.skills,
        pacer=ChannelPacer(rate=settings.slack_channel_rate, burst=3),
    )
    if settings.api_secret is not None:
        api_secret = settings.api_secret.get_secret_value()
    else:
        kept, generated = settings.local_secret("api")
        api_secret = kept.get_secret_value()
        # "generated" on every start read as a rotated secret: API clients would re-sign for nothing.
        log.warning("api_secret_generated" if generated else "api_secret_from_file",
                    path=str(settings.data_dir / "api.secret"), hint="set SWITCHBOARD_API_SECRET in production")
    round_trips = _round_trips(settings, embedded)
    store = ConversationStore(redis, settings.partitions, settings.reopen_window_s, round_trips)
    channels: dict[ChannelKind, CustomerChannel] = {
        **senders(channel_configs, redis, session),
        ChannelKind.API: ApiCallbackChannel(settings.api_callback_url, api_secret, session),
    }
    sla = SlaTracker(redis, store, policies, desk)
    pipeline = Pipeline(
        redis=redis, store=store, policies=policies, scorer=LearnerScorer(), desk=desk, channels=channels,
        automation=make_automation(settings, policies, session, kb), sla=sla, identity=Identity(redis),
        retries=DeliveryRetries(redis), bot_followup=BotFollowUp(redis, store, settings.bot_quiet_s),
        eraser=Eraser(redis, store, desk, policies),
        round_trips=round_trips,
    )
    return Runtime(
        settings=settings, redis=redis, policy=policy, policies=policies, store=store, slack=slack,
        client=client, desk=desk, session=session, pipeline=pipeline, api_secret=api_secret, embedded=embedded,
        ops=DeskOps(redis, store, policies, sla), sla=sla, oauth=oauth, channel_configs=channel_configs,
    )
