"""Ingest ceiling: `POST /v1/messages` against a bare aiohttp handler doing one XADD, same Redis, one run.

Usage: python bench/ingest.py [--seconds 5] [--concurrency 64] [--rounds 3]
Prints requests/s for both (median of rounds) and the ratio. The gateway runs as `switchboard web`
(signature check, pydantic validation, Lua ingest with de-duplication, structured log line).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path

from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port, median, process, redis_server
from bench._http import Client, run_uvloop
from integrations.webhook.signature import sign

SECRET = "bench-secret-0123456789abcdef"
BARE = """
import asyncio, sys, redis.asyncio as r
from aiohttp import web
try:
    import uvloop  # the same loop the gateway runs on, so the ratio compares like with like
    loop = uvloop.new_event_loop()
except ImportError:
    loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
client = r.from_url(sys.argv[2])
async def handle(request):
    body = await request.read()
    await client.xadd("bare:in", {"data": body})
    return web.json_response({"status": "accepted"}, status=202)
app = web.Application()
app.router.add_post("/v1/messages", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=loop)
"""


def bodies(n: int, run: str) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        body = json.dumps(
            {"customer_id": f"c-{run}-{i % 5000}", "message_id": f"m-{run}-{i}",
             "text": "Hi, I was charged twice for my last order, can you refund one of them?"}
        ).encode()
        out.append((body, sign(SECRET, body)))
    return out


async def load(url: str, seconds: float, concurrency: int, run: str) -> float:
    payloads = bodies(200_000, run)
    counter = itertools.count()
    done = 0
    errors = 0
    deadline = time.perf_counter() + seconds
    target = URL(url)
    client = Client(target.host or "127.0.0.1", target.port or 80, concurrency)

    async def one_client() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            body, sig = payloads[next(counter) % len(payloads)]
            status, _ = await client.post(client.head(target.path, {"X-Switchboard-Signature": sig}), body)
            if status == 202:
                done += 1
            else:
                errors += 1

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    finally:
        await client.close()
    elapsed = time.perf_counter() - start
    if errors:
        print(f"  warning: {errors} non-202 answers", file=sys.stderr)
    return done / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, list[float]] = {"bare": [], "gateway": []}
    with redis_server() as redis_url:
        for rnd in range(args.rounds):
            port = free_port()
            with process([sys.executable, "-c", BARE, str(port), redis_url], port):
                url = f"http://127.0.0.1:{port}/v1/messages"
                results["bare"].append(run_uvloop(load(url, args.seconds, args.concurrency, f"b{rnd}")))
            port = free_port()
            env = {"REDIS_URL": redis_url, "PORT": str(port), "SWITCHBOARD_API_SECRET": SECRET,
                   "SWITCHBOARD_LOG_FORMAT": "json", "SWITCHBOARD_DATA_DIR": "/tmp/sb-bench-data"}
            with process([sys.executable, "-m", "gateway.cli", "web"], port, env):
                url = f"http://127.0.0.1:{port}/v1/messages"
                results["gateway"].append(run_uvloop(load(url, args.seconds, args.concurrency, f"g{rnd}")))
            print(f"round {rnd + 1}: bare {results['bare'][-1]:.0f} req/s, gateway {results['gateway'][-1]:.0f} req/s")
    bare, gw = median(results["bare"]), median(results["gateway"])
    print(f"bare aiohttp+XADD      median {bare:8.0f} req/s")
    print(f"POST /v1/messages      median {gw:8.0f} req/s")
    print(f"ratio gateway/bare     {gw / bare:.2f}  (goal >= 0.60)")


if __name__ == "__main__":
    main()
