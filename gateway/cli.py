"""`switchboard` console script: serve (all in one), web, worker, learner, plus learner tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import signal
import socket
import sys
from collections.abc import Callable, Sequence

import aiohttp
import structlog
from aiohttp import web
from slack_sdk.errors import SlackApiError

from gateway import loop as event_loop
from gateway import metrics, send, status
from gateway.app import create_app
from gateway.embedded_redis import EmbeddedRedisFailed
from gateway.logging import configure_logging
from gateway.runtime import Runtime, build_runtime, install_token
from gateway.serve_lock import busy_message, lock_holder
from gateway.settings import ConfigError, Settings, load_settings
from gateway.streams import agree_on_partitions
from gateway.worker import Worker
from integrations.slack.commands import watch_models
from learners.service import LearnerScorer

log = structlog.get_logger(__name__)

ROLES = {"serve": {"web", "worker", "learner"}, "web": {"web"}, "worker": {"worker"}, "learner": {"learner"}}


REFUSED_TOKEN = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                           "missing_scope", "not_allowed_token_type"})
"""Slack errors no retry mends: the token itself is wrong."""
SLACK_WAIT_S = 30.0


async def _ensure_channels(rt: Runtime, stop: asyncio.Event) -> None:
    """The emulator may live in another process that is still starting: retried for `SLACK_WAIT_S`.

    A token Slack refuses, or a Slack that never answers, is a configuration error (one line, exit 2): this
    retried a refused token sixty times at info level and then died with a traceback, which a process manager
    restarts for ever. A SIGTERM while waiting just stops."""
    token = "SLACK_BOT_TOKEN" if rt.settings.slack_bot_token else "the installed Slack token"
    deadline = asyncio.get_running_loop().time() + SLACK_WAIT_S
    attempt = 0
    while True:
        attempt += 1
        try:
            await rt.desk.ensure_channels(rt.policy.channels())
            return
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            if error in REFUSED_TOKEN:
                raise ConfigError(f"configuration error: {token}: Slack refused it ({error})") from None
            last = error
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            last = str(exc) or type(exc).__name__
        if stop.is_set():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"configuration error: SLACK_API_URL: Slack did not answer within {SLACK_WAIT_S:.0f} s "
                              f"({last})")
        log.warning("slack_not_ready", attempt=attempt, error=last)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


def freeze_startup_objects() -> None:
    """Move everything built at start-up (imported modules, models, clients: ~100k objects) out of
    the garbage collector's reach. Otherwise every full collection walks them all, and those pauses
    (65-95 ms, measured in a worker) were the whole of the p99 tail at 200 messages/s."""
    gc.collect()
    gc.freeze()


async def _refresh_models(rt: Runtime, stop: asyncio.Event, interval: float = 2.0) -> None:
    """Hot-swap the newest model snapshot the learner published; no restart needed."""
    scorer = rt.pipeline.scorer
    refresh = getattr(scorer, "refresh", None)
    while refresh is not None and not stop.is_set():
        try:
            await refresh(rt.redis)
        except Exception as exc:
            log.warning("model_refresh_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def _run_learner(rt: Runtime, stop: asyncio.Event) -> None:
    from learners.process import run_learner

    await run_learner(rt.redis, stop=stop)


def listen_error(exc: OSError, host: str, port: int, variable: str) -> ConfigError:
    """A bind failure as the one-line configuration error it is, naming the variable to change."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"configuration error: SWITCHBOARD_HOST: cannot resolve {host!r} ({exc.strerror})")
    if exc.errno == errno.EADDRNOTAVAIL:
        variable = "SWITCHBOARD_HOST"
    hint = "; another process is listening there" if exc.errno == errno.EADDRINUSE else ""
    return ConfigError(f"configuration error: {variable}: cannot listen on {host}:{port} ({exc.strerror}){hint}")


def check_listen(host: str, port: int, variable: str) -> None:
    """Bind once and let go, before Redis or anything else starts: a taken port or a bad host used to
    surface only after the embedded Redis was up, as a 30-line traceback. The real bind still checks
    (someone may take the port in between); this only makes the common mistake cheap and clear."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this host lacks (IPv6 off): the server skips it too
                continue
            with sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp: TIME_WAIT is no clash
                sock.bind(address)
    except OSError as exc:
        raise listen_error(exc, host, port, variable) from None


def preflight(settings: Settings, roles: set[str]) -> None:
    """Everything that can refuse start-up in one line, checked before anything is opened."""
    if roles == ROLES["serve"] and not settings.redis_url:
        holder = lock_holder(settings.data_dir)  # EmbeddedRedis takes the lock itself; this names the holder first
        if holder is not None:
            raise ConfigError(busy_message(settings.data_dir, holder))
    if "worker" in roles and "web" not in roles and not settings.slack_configured and not settings.slack_api_url:
        # Without real Slack the emulator lives in the web process. The worker used to look for it on its own
        # PORT (honcho gives each process another), log `slack_not_ready` for five minutes and then exit with
        # a traceback, taking the whole honcho stack down with it.
        raise ConfigError(
            "configuration error: SLACK_API_URL: a worker without real Slack (SLACK_BOT_TOKEN) posts to the web "
            "process's Slack emulator: set SLACK_API_URL=http://<web host>:<web PORT>/_slack/api/"
        )
    if (roles != ROLES["serve"] and roles & {"web", "worker"} and settings.slack_configured and not settings.api_secret
            and not (settings.data_dir / "api.secret").exists()):
        # Each host (container) generated its own into its data folder: webs checked requests against different
        # secrets (some 401s) and workers signed callbacks with one the customer's system did not know. A folder
        # that already has one is a deployment that works on one host (processes sharing it): warned, not stopped.
        raise ConfigError(
            "configuration error: SWITCHBOARD_API_SECRET: required for separate web and worker processes with real "
            "Slack (each would generate its own); set the same secret in every process and in your API clients"
        )
    if "web" in roles:
        check_listen(settings.host, settings.port, "PORT")
    elif settings.metrics_port is not None:
        check_listen(settings.host, settings.metrics_port, "SWITCHBOARD_METRICS_PORT")


async def run(settings: Settings, roles: set[str]) -> None:
    preflight(settings, roles)
    rt = await build_runtime(settings, allow_embedded=roles == ROLES["serve"])
    if roles & {"web", "worker"}:
        try:
            await agree_on_partitions(rt.redis, settings.partitions)
        except ConfigError:
            await rt.close()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        if "web" in roles:
            runner = web.AppRunner(create_app(rt), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.host, settings.port).start()
            except OSError as err:
                raise listen_error(err, settings.host, settings.port, "PORT") from None
            log.info("web_listening", url=f"http://{settings.host}:{settings.port}", roles=sorted(roles))
        elif settings.metrics_port is not None:
            # A learner-only process scores nothing: its scorer's gauges read "untrained" for ever (its own
            # state is in switchboard_learner_leader, _outcomes_total, _published_version).
            scorer = rt.pipeline.scorer if "worker" in roles else None
            source = metrics.MetricsSource.of(rt.redis, settings.partitions, scorer)
            try:
                runner = await metrics.start_metrics_server(source, settings.host, settings.metrics_port)
            except OSError as err:
                raise listen_error(err, settings.host, settings.metrics_port, "SWITCHBOARD_METRICS_PORT") from None
            log.info("metrics_listening", url=f"http://{settings.host}:{settings.metrics_port}/metrics",
                     roles=sorted(roles))
        if rt.embedded is not None and rt.embedded.process is not None:
            tasks.append(asyncio.create_task(rt.embedded.watch(stop), name="embedded-redis"))
        if "worker" in roles:
            if rt.settings.slack_oauth_enabled:
                while not await install_token(rt) and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=5)
            await _ensure_channels(rt, stop)
            if stop.is_set():  # stopped while waiting for Slack
                return
            worker = Worker(rt.redis, rt.pipeline, settings.partitions, settings.lease_ms, settings.reclaim_idle_ms)
            tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
            tasks.append(asyncio.create_task(rt.sla.run(stop), name="sla"))
            if rt.pipeline.bot_followup is not None:
                tasks.append(asyncio.create_task(rt.pipeline.bot_followup.run(stop), name="bot-followup"))
            if isinstance(rt.pipeline.scorer, LearnerScorer):
                leads = await rt.desk.channel_id(rt.policy.leads_channel)
                watcher = watch_models(rt.pipeline.scorer, rt.client, leads, stop, redis=rt.redis)
                tasks.append(asyncio.create_task(watcher, name="model-watch"))
        if roles & {"web", "worker"}:
            # The web role scores too (`/metrics` gauges, slash-command dry runs): a web-only process
            # that never refreshed reported an untrained scorer forever. One task per process.
            tasks.append(asyncio.create_task(_refresh_models(rt, stop), name="models"))
        if "learner" in roles:
            tasks.append(asyncio.create_task(_run_learner(rt, stop), name="learner"))
        freeze_startup_objects()
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception() if task is not waiter else None
            if exc is not None:
                raise exc
        stop.set()
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        if runner is not None:
            await runner.cleanup()
        await rt.close()
        log.info("stopped")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="AI-human routing gateway for support")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "web + worker + learner in one process (local use; embedded Redis and Slack emulator)"),
        ("web", "HTTP gateway only (needs REDIS_URL)"),
        ("worker", "routing worker only (needs REDIS_URL)"),
        ("learner", "outcome learner only (needs REDIS_URL)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=_process_command(name))
    send.register(sub)
    send.register_forget(sub)
    status.register(sub)
    try:
        from learners.commands import register
    except ImportError:
        pass
    else:
        register(sub)
    return parser


def _process_command(name: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        try:
            settings = load_settings()
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        configure_logging(settings.log_format, settings.log_level, settings.secret_values())
        try:
            event_loop.run(run(settings, ROLES[name]), settings.event_loop)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        except EmbeddedRedisFailed as exc:
            print(exc, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        return 0

    return command


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
