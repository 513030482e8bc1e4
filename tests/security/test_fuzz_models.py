"""Hypothesis against every pydantic boundary model and the signature parser.

The contract at a boundary: anything a sender can put on the wire either validates or raises the one
documented error (ValidationError / PolicyError / SignatureError). A TypeError, RecursionError or
KeyError escaping here would be a 500 in the web process or a crashed worker.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gateway.domain import MAX_TEXT, CustomerProfile, InboundMessage, Outcome
from integrations.twilio.status import TwilioStatus
from integrations.twilio.webhook import TwilioInbound
from integrations.webhook.api import ApiMessageIn
from integrations.webhook.signature import SignatureError, sign, verify
from router.policy import DEFAULT_POLICY_PATH, Policy, PolicyError, load_policy

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50),
    st.sampled_from(["", " ", "\x00", "a" * (MAX_TEXT + 1), "api", "web", "gold", "x@y.zz", "+49 170 1234567",
                     "2026-01-01T00:00:00Z", "resolved", "negative", "../../etc/passwd", "<!channel>"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)


def objects_for(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Dicts keyed mostly by the model's real field names (and their wire aliases, such as Twilio's
    `MessageSid`), so validation goes deep, plus junk."""
    aliases = [f.alias for f in model.model_fields.values() if f.alias]
    names = [*model.model_fields, *aliases, "extra_field", ""]
    return st.one_of(json_values, st.dictionaries(st.sampled_from(names), json_values, max_size=len(names)))


def only_validation_errors(model: type[BaseModel], data: Any) -> None:
    try:
        model.model_validate(data)
    except ValidationError:
        pass
    try:
        model.model_validate_json(json.dumps(data, allow_nan=True))
    except ValidationError:
        pass


@FUZZ
@given(objects_for(ApiMessageIn))
def test_api_message_in(data: Any) -> None:
    only_validation_errors(ApiMessageIn, data)


@FUZZ
@given(objects_for(InboundMessage))
def test_inbound_message(data: Any) -> None:
    only_validation_errors(InboundMessage, data)


@FUZZ
@given(objects_for(CustomerProfile))
def test_customer_profile(data: Any) -> None:
    only_validation_errors(CustomerProfile, data)


@FUZZ
@given(objects_for(Outcome))
def test_outcome(data: Any) -> None:
    only_validation_errors(Outcome, data)


@FUZZ
@given(objects_for(TwilioInbound))
def test_twilio_inbound(data: Any) -> None:
    only_validation_errors(TwilioInbound, data)


@FUZZ
@given(objects_for(TwilioStatus))
def test_twilio_status_callback(data: Any) -> None:
    only_validation_errors(TwilioStatus, data)
    try:
        TwilioStatus.model_validate(data).reason()  # what the thread is told must come out of any valid report
    except ValidationError:
        pass


@FUZZ
@given(st.text(max_size=300), st.binary(max_size=64))
def test_raw_json_bytes_into_api_model(text: str, raw: bytes) -> None:
    for blob in (text, raw):
        try:
            ApiMessageIn.model_validate_json(blob)
        except ValidationError:
            pass


DEFAULT_POLICY = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


POLICY_PATHS = [p for p in _paths(DEFAULT_POLICY) if p]


@st.composite
def mutated_policies(draw: st.DrawFn) -> Any:
    """The shipped policy with a few values replaced by junk: realistic YAML mistakes, deep in the tree."""
    data = copy.deepcopy(DEFAULT_POLICY)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(POLICY_PATHS))
        node = data
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(mutated_policies(), json_values), st.booleans())
def test_policy_yaml_only_policy_errors(tmp_path: Path, data: Any, as_garbage_text: bool) -> None:
    target = tmp_path / "policy.yaml"
    text = json.dumps(data)[:200] + ": [unclosed" if as_garbage_text else yaml.safe_dump(data, allow_unicode=True)
    target.write_text(text, encoding="utf-8")
    try:
        load_policy(target)
    except PolicyError:
        pass
    try:
        Policy.from_json(json.dumps(data, allow_nan=True))
    except ValidationError:
        pass


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=200)), st.binary(max_size=100), st.integers(-2**63, 2**63))
def test_signature_header_parser(header: str | None, body: bytes, t: int) -> None:
    try:
        verify("s3cret-abcdef", header, body)
    except SignatureError:
        pass
    try:
        verify("s3cret-abcdef", f"t={t},v1=00,v1={header}", body)
    except SignatureError:
        pass
    verify("s3cret-abcdef", sign("s3cret-abcdef", body), body)  # and a good one still passes
