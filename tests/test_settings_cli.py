"""Start-up configuration: one clear line naming the variable, and secrets never in the logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.logging import configure_logging
from gateway.settings import ConfigError, LogFormat, load_settings


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SWITCHBOARD_", "REDIS_URL", "PORT"))}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], env={**base, **env}, cwd=cwd, capture_output=True,
        text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "args", "variable"),
    [
        ({"PORT": "eighty"}, ["serve"], "PORT"),
        ({"PORT": "70000"}, ["serve"], "PORT"),
        ({"REDIS_URL": "localhost:6379"}, ["web"], "REDIS_URL"),
        ({}, ["web"], "REDIS_URL"),
        ({"SLACK_BOT_TOKEN": "xoxb-123"}, ["serve"], "SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": "not-a-token", "SLACK_SIGNING_SECRET": "s"}, ["serve"], "SLACK_BOT_TOKEN"),
        ({"SWITCHBOARD_LOG_FORMAT": "xml"}, ["serve"], "SWITCHBOARD_LOG_FORMAT"),
        ({"SWITCHBOARD_EVENT_LOOP": "trio"}, ["serve"], "SWITCHBOARD_EVENT_LOOP"),
        ({"WEBCHAT_TRUSTED_PROXIES": "eleven"}, ["serve"], "WEBCHAT_TRUSTED_PROXIES"),
        ({"WEBCHAT_TRUSTED_PROXIES": "1", "WEBCHAT_TRUSTED_PROXY_NETS": "nonsense"}, ["serve"],
         "WEBCHAT_TRUSTED_PROXY_NETS"),
        ({"SWITCHBOARD_POLICY_FILE": "/nonexistent/policy.yaml", "REDIS_URL": "redis://127.0.0.1:1/0"}, ["web"],
         "SWITCHBOARD_POLICY_FILE"),
    ],
)
def test_bad_configuration_stops_with_one_line(env: dict[str, str], args: list[str], variable: str,
                                               tmp_path: Path) -> None:
    proc = run_cli(args, env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("configuration error: ") and variable in lines[0]
    for value in env.values():
        if "xoxb" in value:
            assert value not in proc.stderr


def test_invalid_policy_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("skills:\n  billing:\n    channel: 'Not A Channel!'\n")
    proc = run_cli(["web"], {"SWITCHBOARD_POLICY_FILE": str(bad), "REDIS_URL": "redis://127.0.0.1:1/0"}, tmp_path)
    assert proc.returncode == 2
    assert "skills.billing.channel" in proc.stderr


def test_secrets_and_pii_are_redacted_from_logs(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    secret = "xoxb-very-secret-token-123"
    configure_logging(LogFormat.JSON, "info", [secret])
    try:
        structlog.get_logger("t").info(
            "slack_call", conversation_id="conv_1", detail=f"Authorization: Bearer {secret}",
            text="mail me at jane@example.com or +49 170 1234567, card 4111 1111 1111 1111",
        )
    finally:
        structlog.reset_defaults()  # the logger factory holds capsys' stream, closed after this test
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert secret not in json.dumps(line)
    assert "[redacted]" in line["detail"]
    assert line["text"] == "mail me at [email] or [phone], card [card]"
    assert line["conversation_id"] == "conv_1"


def test_the_local_api_secret_is_generated_once_however_many_processes_start_together(tmp_path: Path) -> None:
    """honcho starts web, worker and learner at once: each wrote its own secret, and they signed and checked
    with different ones; and every start logged `api_secret_generated`, read as a rotated secret."""
    settings = load_settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: settings.local_secret("api"), range(16)))
    assert len({secret.get_secret_value() for secret, _ in results}) == 1
    assert [generated for _, generated in results].count(True) == 1
    secret, generated = settings.local_secret("api")
    assert not generated and secret.get_secret_value() == (tmp_path / "data" / "api.secret").read_text()
    assert oct((tmp_path / "data" / "api.secret").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("redis_url", "http://127.0.0.1:6379", "configuration error: REDIS_URL: must start with redis://, rediss:// or unix://"),
    ("redis_url", "redis://127.0.0.1:6379/abc", "configuration error: REDIS_URL: database 'abc' must be a number"),
    ("redis_url", "redis:///0", "configuration error: REDIS_URL: names no host"),
    ("slack_api_url", "redis://127.0.0.1:6379/0", "configuration error: SLACK_API_URL: must be an http:// or https://"),
    ("api_callback_url", "unix:///tmp/sock", "configuration error: SWITCHBOARD_API_CALLBACK_URL: must be an http://"),
])
def test_urls_are_checked_for_what_each_setting_takes(field: str, value: str, message: str) -> None:
    """`REDIS_URL=http://…` was a traceback at the first connect; `redis://host/abc` silently used database 0."""
    with pytest.raises(ConfigError) as refused:
        load_settings(**{field: value})
    assert str(refused.value).startswith(message), str(refused.value)


def test_good_urls_pass() -> None:
    settings = load_settings(redis_url="rediss://:pw@cache.example:6380/2", slack_api_url="http://127.0.0.1:8080/_slack/api/")
    assert settings.redis_url == "rediss://:pw@cache.example:6380/2"
    assert load_settings(redis_url="unix:///run/redis.sock?db=1").redis_url == "unix:///run/redis.sock?db=1"


def test_the_pacer_takes_up_to_a_thousand_posts_a_second_for_the_emulator() -> None:
    """Benchmarks raise it past Slack's ~1/s so the gateway, not the desk's pacing, is what they measure."""
    assert load_settings(slack_channel_rate=1000).slack_channel_rate == 1000
    with pytest.raises(ConfigError, match="SLACK_CHANNEL_RATE"):
        load_settings(slack_channel_rate=1001)


def test_libraries_log_lines_are_json_and_masked_too() -> None:
    """slack_bolt printed "As you gave `client` as well, `token` will be unused." as bare text on every web start
    with a token: not JSON, between JSON lines, and nothing a library printed was masked."""
    code = (
        "from slack_sdk.web.async_client import AsyncWebClient\n"
        "from gateway.logging import configure_logging\n"
        "from gateway.settings import LogFormat\n"
        "from integrations.slack.bolt_app import create_bolt_app\n"
        "import logging\n"
        "configure_logging(LogFormat.JSON, 'info', ['xoxb-123456'])\n"
        "create_bolt_app(AsyncWebClient(token='xoxb-123456'), 'signing')\n"
        "logging.getLogger('somelib').error('token xoxb-123456 for jane@example.com')\n"
        "logging.getLogger('somelib').info('chatter')\n"
        "logging.getLogger('somelib').log(45, 'a level of its own')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SLACK_BOT_TOKEN": "xoxb-123456"}, cwd=Path(__file__).parent.parent)
    lines = [json.loads(line) for line in out.stderr.splitlines()]  # every line is JSON
    assert [(e["logger"], e["level"]) for e in lines] == [("slack_bolt.AsyncApp", "warning"), ("somelib", "error"),
                                                          ("somelib", "error")]
    assert lines[1]["event"] == "library_log" and lines[1]["message"] == "token [redacted] for [email]"
