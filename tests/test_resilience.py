"""Redis going away: the API answers 503 (nothing acknowledged), then recovers by itself."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port
from tests.harness import eventually, make_settings, start_gateway


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes",
         "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis did not start")


async def test_redis_outage_gives_503_then_recovers(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path)
    gw = await start_gateway(make_settings(f"redis://127.0.0.1:{port}/0", tmp_path), with_worker=True)
    try:
        msg = {"customer_id": "c-1", "message_id": "m-1", "text": "my invoice is wrong"}
        status, first = await gw.post_message(msg)
        assert status == 202
        proc.terminate()
        proc.wait(timeout=10)
        status, body = await gw.post_message({**msg, "message_id": "m-2"})
        assert status == 503 and body["error"] == "unavailable"
        async with gw.session.get(f"{gw.url}/readyz") as resp:
            assert resp.status == 503
        proc = start_redis(port, tmp_path)

        async def accepted() -> bool:
            return (await gw.post_message({**msg, "message_id": "m-2"}))[0] == 202

        await eventually(accepted, timeout=15, interval=0.3)

        async def both_in_transcript() -> bool:
            conv = await gw.rt.store.load(first["conversation_id"])
            return conv is not None and [m.external_id for m in conv.messages] == ["m-1", "m-2"]

        # What was acknowledged before the outage survived it (AOF), and the retry joined it.
        await eventually(both_in_transcript, timeout=15)
        await eventually(lambda: gw.slack.messages("support-billing"), timeout=15)
    finally:
        await gw.close()
        proc.terminate()
        proc.wait(timeout=10)

