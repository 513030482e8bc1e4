"""schemathesis against the real web process, driven by the repository's openapi.yaml.

Unsigned: what schemathesis generates on its own must never be a 5xx, must conform to the document,
and `POST /v1/messages` must answer 401. Signed: the generated bodies are signed the way a client
would sign them, so the validation path runs, and the answer is checked against an oracle (the public
pydantic model itself): 202 if it validates, 400 if not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from integrations.webhook.api import ApiMessageIn
from integrations.webhook.signature import sign
from tests.conftest import free_port
from tests.harness import API_SECRET

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=60,
                                allow_x00=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SEEN: Counter[int] = Counter()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def base_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    folder = tmp_path_factory.mktemp("openapi-web")
    env = {**os.environ, "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/5", "PORT": str(port),
           "SWITCHBOARD_API_SECRET": API_SECRET, "SWITCHBOARD_DATA_DIR": str(folder),
           "SWITCHBOARD_LOG_FORMAT": "json", "SWITCHBOARD_LOG_LEVEL": "warning",
           "WEBCHAT_SESSION_RATE": "100000"}  # the fuzzing comes from one address
    log = (folder / "web.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "web"], env=env, stdout=subprocess.DEVNULL,
                            stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            raise AssertionError("web did not start")
        yield url
        assert proc.poll() is None, "the web process died during the fuzzing"
        assert b"Traceback" not in (folder / "web.log").read_bytes(), "an unhandled error was logged"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@schema.parametrize()
@FAST
def test_unsigned_requests(case: schemathesis.Case, base_url: str) -> None:
    response = case.call_and_validate(base_url=base_url, checks=CHECKS)
    if case.operation.path == "/v1/messages" and case.method.upper() == "POST":
        assert response.status_code in (400, 401, 413), response.status_code
        if response.status_code == 400:  # only a body aiohttp could not even read gets here first
            assert response.json()["error"] in ("unreadable_body", "invalid_json")


def expected_status(raw: bytes) -> int:
    try:
        ApiMessageIn.model_validate(json.loads(raw.decode("utf-8")))
    except (ValueError, ValidationError):
        return 400
    return 202


@schema.include(path="/v1/messages").parametrize()
@FAST
def test_signed_requests_follow_the_model(case: schemathesis.Case, base_url: str) -> None:
    body = case.body
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, NotSet):
        raw = b""
    else:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    response = requests.post(
        f"{base_url}/v1/messages", data=raw, timeout=10,
        headers={"Content-Type": "application/json", "X-Switchboard-Signature": sign(API_SECRET, raw)},
    )
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == expected_status(raw), (raw[:300], response.text[:300])
    SEEN[response.status_code] += 1


def test_signed_fuzzing_reached_both_outcomes() -> None:
    """Runs after the signed test (file order): the fuzzing must have been accepted *and* refused."""
    assert SEEN[202] > 0 and SEEN[400] > 0, SEEN
