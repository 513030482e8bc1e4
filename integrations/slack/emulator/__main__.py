"""Run the emulator on its own: ``python -m integrations.slack.emulator --port 8900 ...``.

Useful when the gateway runs against "real" Slack settings pointed at this process, or to click
through a card by hand; the desk page is at ``http://127.0.0.1:<port>/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aiohttp import web

from gateway.loop import new_event_loop

from .app import create_emulator_app
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = EmulatorConfig(
        gateway_events_url=args.gateway_url,
        signing_secret=args.signing_secret,
        bot_token=args.bot_token,
        public_url=args.public_url or f"http://{args.host}:{args.port}/",
        max_messages_per_channel=args.max_messages_per_channel,
    )
    print(f"Slack emulator desk: http://{args.host}:{args.port}/  (Web API at /api/)", flush=True)
    web.run_app(create_emulator_app(config), host=args.host, port=args.port, print=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
