"""Run the emulator on its own: ``python -m integrations.slack.emulator --port 8900 ...``.

Useful when the gateway runs against "real" Slack settings pointed at this process, or to click
through a card by hand; the desk page is at ``http://127.0.0.1:<port>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from gateway.logging import configure_logging
from gateway.loop import new_event_loop

from .app import EMULATOR_STATE, create_emulator_app
from .config import EmulatorConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m integrations.slack.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument(
        "--gateway-url", default=None, help="where signed requests go, e.g. http://127.0.0.1:8080/slack/events"
    )
    parser.add_argument("--signing-secret", default="", help="the gateway's Slack signing secret")
    parser.add_argument("--bot-token", default="xoxb-emulator")
    parser.add_argument("--max-messages-per-channel", type=int, default=None,
                        help="keep only the newest N messages per channel (long soak runs)")
    parser.add_argument("--public-url", default=None, help="this emulator's URL as the gateway sees it (response_url)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="debug prints every Web API call")
    return parser.parse_args(argv)


async def _freeze_stored_messages(app: web.Application) -> AsyncIterator[None]:
    """Keep the stored workspace out of the garbage collector's full passes.

    Every card is ~100 small dicts and lists kept for good; a full collection walks them all, and
    past a few thousand cards those pauses (60-130 ms, measured) showed up as Slack latency in the
    gateway's benchmarks. Freezing what is stored so far makes later passes skip it.
    """

    async def loop() -> None:
        state, frozen_at = app[EMULATOR_STATE], 0
        while True:
            # Often: freezing is a cheap list splice, and only the unfrozen rest is ever walked.
            await asyncio.sleep(0.2)
            stored = sum(len(c.messages) for c in state.channels.values())
            if stored != frozen_at:
                gc.freeze()
                frozen_at = stored

    task = asyncio.create_task(loop())
    yield
    task.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Unconfigured, structlog renders every event, the per-call debug line included: at load that was a
    # tenth of the emulator's CPU (py-spy), spent on lines nobody reads.
    configure_logging(level=args.log_level)
    config = EmulatorConfig(
        gateway_events_url=args.gateway_url,
        signing_secret=args.signing_secret,
        bot_token=args.bot_token,
        public_url=args.public_url or f"http://{args.host}:{args.port}/",
        max_messages_per_channel=args.max_messages_per_channel,
    )
    print(f"Slack emulator desk: http://{args.host}:{args.port}/  (Web API at /api/)", flush=True)
    app = create_emulator_app(config)
    app.cleanup_ctx.append(_freeze_stored_messages)
    gc.collect()
    gc.freeze()
    web.run_app(app, host=args.host, port=args.port, print=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
