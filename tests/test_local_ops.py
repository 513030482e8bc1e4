"""Local mode's side commands (`send`, `train`) find what `serve` uses, and a data folder has one owner.

Why: `send` read the API secret only from the environment (a secret in `.env` gave 401), `train`
defaulted to localhost:6379 (some other Redis, reported as success), a second `serve` started a
second redis-server on the same append-only file, and a missing knowledge-base file was reported
after Redis had been opened (an "Unclosed client session" warning under the one-line error).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis as syncredis
import redis.asyncio as aioredis

from learners import snapshot
from tests.conftest import free_port, wait_port
from tests.local_serve import TRAIN, history, lines, run_cli, start_serve


def test_send_and_train_use_dotenv_and_local_modes_own_redis(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(f"PORT={port}\nSWITCHBOARD_API_SECRET=from-dotenv-0123456789\n")
    history(tmp_path)
    serve = start_serve(tmp_path, port)
    try:
        serve.wait_ready()
        sent = run_cli(["send", "--name", "Jane", "My parcel never arrived!"], tmp_path, timeout=30)
        assert sent.returncode == 0 and sent.stdout.startswith("202"), sent.stdout + sent.stderr

        started = time.monotonic()
        refused = run_cli(TRAIN, tmp_path)  # its learner holds the snapshot lock: say so at once
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert len(lines(refused.stderr)) == 1, refused.stderr
        assert f"`switchboard serve` (PID {serve.proc.pid})" in refused.stderr
        assert time.monotonic() - started < 20
        url = (tmp_path / ".switchboard" / "redis.url").read_text().strip()
    finally:
        assert serve.stop() == 0, serve.log.read_text()
    assert not (tmp_path / ".switchboard" / "redis.url").exists()

    first = run_cli(TRAIN, tmp_path)  # no serve running: train opens the folder's own Redis
    assert first.returncode == 0, first.stderr
    version = int(first.stdout.split("published snapshot version=")[1].split()[0])
    assert f"version={version} to local mode's Redis in {(tmp_path / '.switchboard').resolve()}" in first.stdout
    second = run_cli(TRAIN, tmp_path)  # the first model was kept in the folder, not somewhere else
    assert second.returncode == 0 and f"published snapshot version={version + 1} " in second.stdout, second.stderr
    assert url.startswith("redis://127.0.0.1:")


def test_train_follows_redis_url_in_dotenv(sync_redis: syncredis.Redis, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"REDIS_URL={redis_url}\n")
    history(tmp_path)
    out = run_cli(TRAIN, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"to {redis_url} (REDIS_URL)" in out.stdout
    assert sync_redis.hexists(snapshot.SNAPSHOT_KEY, "sentiment")


def test_train_with_redis_unreachable_is_one_line(tmp_path: Path) -> None:
    """It was a 40-line traceback from inside redis-py."""
    history(tmp_path)
    dead = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    out = run_cli(TRAIN, tmp_path, REDIS_URL=dead)
    assert out.returncode == 2, out.stderr
    (line,) = lines(out.stderr)
    assert line.startswith("configuration error: REDIS_URL: cannot reach redis://:***@127.0.0.1:"), line
    assert line.endswith("; nothing trained") and "hunter2" not in out.stderr


def test_a_data_folder_in_use_refuses_serve_in_one_line(tmp_path: Path) -> None:
    from gateway.serve_lock import DataDirLock

    lock = DataDirLock(tmp_path / ".switchboard", role="serve")
    lock.acquire()
    try:
        out = run_cli(["serve"], tmp_path, timeout=30, PORT=str(free_port()))
    finally:
        lock.release()
    assert out.returncode == 2, out.stderr
    assert lines(out.stderr) == [
        f"configuration error: SWITCHBOARD_DATA_DIR: {(tmp_path / '.switchboard').resolve()} is in use by "
        f"`switchboard serve` (PID {os.getpid()}); stop it, or set SWITCHBOARD_DATA_DIR to another folder"
    ]
    assert not (tmp_path / ".switchboard" / "redis").exists(), "no second redis-server on the same files"


async def test_the_embedded_redis_itself_takes_the_folder(tmp_path: Path) -> None:
    """The lock, not only `serve`'s early check: two starts racing past that check still meet here."""
    from gateway.embedded_redis import EmbeddedRedis
    from gateway.settings import ConfigError

    first = EmbeddedRedis(tmp_path)
    await first.start()
    try:
        with pytest.raises(ConfigError, match=f"in use by `switchboard serve` \\(PID {os.getpid()}\\)"):
            await EmbeddedRedis(tmp_path).start()
        assert first.process is not None and first.process.poll() is None
    finally:
        await first.stop()
    again = EmbeddedRedis(tmp_path)  # released on stop
    await again.start()
    await again.stop()


def test_missing_knowledge_base_is_one_line(redis_url: str, tmp_path: Path) -> None:
    out = run_cli(["worker"], tmp_path, REDIS_URL=redis_url, SWITCHBOARD_KB_FILE="/nonexistent.csv",
                  SLACK_API_URL=f"http://127.0.0.1:{free_port()}/_slack/api/")
    assert out.returncode == 2, out.stderr
    assert len(lines(out.stderr)) == 1, out.stderr
    assert lines(out.stderr)[0].startswith("configuration error: SWITCHBOARD_KB_FILE: ")


def test_a_worker_without_slack_or_an_emulator_url_is_one_line(redis_url: str, tmp_path: Path) -> None:
    """It looked for the emulator on its own port for five minutes, then exited with a traceback."""
    started = time.monotonic()
    out = run_cli(["worker"], tmp_path, REDIS_URL=redis_url)
    assert out.returncode == 2 and time.monotonic() - started < 30, out.stderr
    assert lines(out.stderr) == [
        "configuration error: SLACK_API_URL: a worker without real Slack (SLACK_BOT_TOKEN) posts to the web "
        "process's Slack emulator: set SLACK_API_URL=http://<web host>:<web PORT>/_slack/api/"
    ]


def test_a_process_with_another_partition_count_is_refused(sync_redis: syncredis.Redis, redis_url: str,
                                                            tmp_path: Path) -> None:
    """A web set to 16 beside workers set to 8 queued a third of its messages where no worker reads, and 202'd."""
    import asyncio

    from gateway.streams import PARTITIONS_KEY, agree_on_partitions

    async def first_process() -> None:  # records its count
        client = aioredis.from_url(redis_url)
        try:
            await agree_on_partitions(client, 8)
        finally:
            await client.aclose()

    asyncio.run(first_process())
    assert sync_redis.get(PARTITIONS_KEY) == b"8"
    out = run_cli(["worker"], tmp_path, REDIS_URL=redis_url, SWITCHBOARD_PARTITIONS="16",
                  SLACK_API_URL=f"http://127.0.0.1:{free_port()}/_slack/api/")
    assert out.returncode == 2, out.stderr
    # (Above it, the log line saying the test Redis keeps no append-only file.)
    (line,) = [line for line in lines(out.stderr) if line.startswith("configuration error")]
    assert line == lines(out.stderr)[-1]
    assert line.startswith("configuration error: SWITCHBOARD_PARTITIONS: this Redis's streams are split into 8 "
                           "partitions and this process is set to 16: run every web and worker with 8."), line
    assert sync_redis.get(PARTITIONS_KEY) == b"8"


@pytest.mark.parametrize(("token", "expected"), [
    ("xoxb-wrong", "configuration error: SLACK_BOT_TOKEN: Slack refused it (invalid_auth)"),
    ("xoxb-emulator", "configuration error: SLACK_API_URL: Slack did not answer within 30 s ("),
])
def test_a_worker_whose_slack_refuses_its_token_or_never_answers_stops_in_one_line(
    redis_url: str, tmp_path: Path, token: str, expected: str
) -> None:
    """It logged slack_not_ready sixty times at info level, then died with a traceback (a restart loop)."""
    import subprocess
    import sys

    port = free_port()
    emulator = subprocess.Popen([sys.executable, "-m", "integrations.slack.emulator", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port, timeout=20)
        api = f"http://127.0.0.1:{port}/api/" if token == "xoxb-wrong" else f"http://127.0.0.1:{free_port()}/api/"
        started = time.monotonic()
        out = run_cli(["worker"], tmp_path, timeout=90, REDIS_URL=redis_url, SLACK_BOT_TOKEN=token,
                      SLACK_SIGNING_SECRET="s" * 32, SLACK_API_URL=api, SWITCHBOARD_API_SECRET="a" * 32)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    assert out.returncode == 2, out.stderr
    assert lines(out.stderr)[-1].startswith(expected), out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - started < 60


def test_separate_processes_on_real_slack_need_a_shared_api_secret(redis_url: str, tmp_path: Path) -> None:
    """Each generated its own into its data folder: on separate hosts some requests got 401 and callbacks were
    signed with a secret the customer's system did not know."""
    out = run_cli(["web"], tmp_path, REDIS_URL=redis_url, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s" * 32,
                  PORT=str(free_port()))
    assert out.returncode == 2, out.stderr
    assert lines(out.stderr) == [
        "configuration error: SWITCHBOARD_API_SECRET: required for separate web and worker processes with real "
        "Slack (each would generate its own); set the same secret in every process and in your API clients"
    ]


def test_the_count_the_streams_show_wins_when_none_is_recorded(sync_redis: syncredis.Redis, redis_url: str,
                                                                tmp_path: Path) -> None:
    """A Redis the release before ran on has streams but no recorded count: the first upgraded process, even one
    set wrongly, recorded its own and locked the rightly set ones out."""
    for p in range(8):  # what eight partitions' workers created
        sync_redis.xgroup_create(f"sb:in:{p}", "workers", id="0", mkstream=True)
    out = run_cli(["worker"], tmp_path, REDIS_URL=redis_url, SWITCHBOARD_PARTITIONS="16",
                  SLACK_API_URL=f"http://127.0.0.1:{free_port()}/_slack/api/")
    assert out.returncode == 2 and "split into 8 partitions and this process is set to 16" in out.stderr, out.stderr
    assert sync_redis.get("sb:partitions") == b"8"


def test_a_host_that_already_shares_a_generated_api_secret_keeps_starting(tmp_path: Path) -> None:
    """Upgrading a one-host deployment (processes sharing one data folder and its api.secret) must not stop it."""
    from gateway.cli import preflight
    from gateway.settings import load_settings

    settings = load_settings(redis_url="redis://127.0.0.1:1/0", slack_bot_token="xoxb-1", slack_signing_secret="s" * 32,
                             data_dir=tmp_path / "data", port=free_port())
    settings.local_secret("api")
    preflight(settings, {"worker"})  # no ConfigError
