"""`switchboard send`: post one signed customer message, the way an integrating system would.

Saves writing an HMAC by hand when trying the gateway out; uses the same signing code as the server.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

from gateway.settings import ConfigError, load_settings
from integrations.webhook.signature import HEADER, sign


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("send", help="send one signed test message to a running gateway")
    p.add_argument("text")
    p.add_argument("--customer", default="demo-customer")
    p.add_argument("--name", default=None)
    p.add_argument("--email", default=None)
    p.add_argument("--tier", default=None)
    p.add_argument("--message-id", default=None)
    p.add_argument("--url", default=None, help="gateway base URL (default http://127.0.0.1:$PORT)")
    p.set_defaults(func=send)


def register_forget(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("forget", help="erase a customer's messages and profile everywhere (right to erasure)")
    p.add_argument("customer", help="api:<id>, email:<address>, phone:+<E.164>, sms:+<n>, webchat:<visitor>, per_…")
    p.add_argument("--url", default=None, help="gateway base URL (default http://127.0.0.1:$PORT)")
    p.add_argument("--deep", action="store_true",
                   help="also read the policy's Slack channels for cards missing from the card list (slow)")
    p.set_defaults(func=forget)


def forget(args: argparse.Namespace) -> int:
    body = json.dumps({"customer": args.customer, "deep": bool(args.deep)}).encode()  # signed: names who
    return _call(args, "DELETE", f"/v1/customers/{urllib.parse.quote(args.customer, safe=':@+')}", body)


def _call(args: argparse.Namespace, method: str, path: str, body: bytes) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    # The server's own rule (environment, then `.env`, then the generated file): reading the environment
    # alone signed with the generated secret while the server checked the one in `.env` (401).
    secret = (settings.api_secret or settings.ensure_local_secret("api")).get_secret_value()
    base = args.url or f"http://127.0.0.1:{settings.port}"
    req = urllib.request.Request(
        f"{base}{path}", data=body, method=method,
        headers={"Content-Type": "application/json", HEADER: sign(secret, body)},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            print(resp.status, resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode(), file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"gateway not reachable at {base}: {exc.reason}", file=sys.stderr)
        return 1


def send(args: argparse.Namespace) -> int:
    profile = {k: v for k, v in {"name": args.name, "email": args.email, "tier": args.tier}.items() if v}
    body = json.dumps(
        {"customer_id": args.customer, "message_id": args.message_id or uuid.uuid4().hex, "text": args.text,
         "customer": profile}
    ).encode()
    return _call(args, "POST", "/v1/messages", body)
