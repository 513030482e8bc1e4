"""Parsing of Slack Web API parameters, shared by every method handler.

slack_sdk sends some methods as form bodies (all values strings, nested objects as JSON text)
and others as JSON bodies (real types), so each helper accepts both spellings of a value.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .state import SlackError
from .wire import loads

Params = dict[str, Any]


def flag(params: Params, key: str) -> bool:
    """Slack accepts true/1 (form bodies send strings, JSON bodies send real booleans)."""
    value = params.get(key)
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def int_param(params: Params, key: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(key) or default)
    except (TypeError, ValueError) as exc:
        raise SlackError("invalid_arguments") from exc
    return min(max(value, low), high)


def jsonish(params: Params, key: str, error: str) -> Any:
    """Nested params arrive as JSON strings in form bodies and as objects in JSON bodies."""
    value = params.get(key)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return loads(value)
        except json.JSONDecodeError as exc:
            raise SlackError(error) from exc
    return value


def parse_blocks(params: Params) -> list[dict[str, Any]] | None:
    blocks = jsonish(params, "blocks", "invalid_blocks")
    if blocks is None:
        return None
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks")
    for block in blocks:  # a loop, not all(<generator>): a card has dozens of blocks, checked on every post
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise SlackError("invalid_blocks")
    return blocks


def parse_metadata(params: Params) -> dict[str, Any] | None:
    metadata = jsonish(params, "metadata", "invalid_metadata_format")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise SlackError("invalid_metadata_format")
    if not isinstance(metadata.get("event_type"), str) or not isinstance(
        metadata.get("event_payload", {}), dict
    ):
        raise SlackError("invalid_metadata_schema")
    return {"event_type": metadata["event_type"], "event_payload": metadata.get("event_payload", {})}


def ts_key(ts: Any) -> int:
    """Compare ts values as integer microseconds; floats lose the last digit at 16 significant ones."""
    text = str(ts or "0")
    seconds, _, fraction = text.partition(".")
    try:
        return int(seconds or 0) * 1_000_000 + int((fraction + "000000")[:6])
    except ValueError as exc:
        raise SlackError("invalid_ts_latest" if "." in text else "invalid_arguments") from exc


def cursor(value: Any) -> str | None:
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(str(value).encode()).decode().removeprefix("next:")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SlackError("invalid_cursor") from exc


def make_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(f"next:{key}".encode()).decode()


def paginate(items: list[dict[str, Any]], params: Params, default: int, key: str) -> tuple[list[Any], str]:
    """Cursor pagination keyed on a stable field, so posts arriving mid-scan don't shift pages."""
    start = cursor(params.get("cursor"))
    if start is not None:
        keys = [str(item[key]) for item in items]
        items = items[keys.index(start) :] if start in keys else []
    limit = int_param(params, "limit", default, 1, 1000)
    next_cursor = make_cursor(str(items[limit][key])) if len(items) > limit else ""
    return items[:limit], next_cursor


def window(messages: list[dict[str, Any]], params: Params) -> list[dict[str, Any]]:
    """Apply oldest/latest/inclusive the way history and replies do."""
    oldest = ts_key(params.get("oldest") or "0")
    latest = ts_key(params["latest"]) if params.get("latest") else None
    inclusive = flag(params, "inclusive")

    def inside(message: dict[str, Any]) -> bool:
        key = ts_key(message["ts"])
        above = key >= oldest if inclusive else key > oldest
        below = latest is None or (key <= latest if inclusive else key < latest)
        return above and below

    return [m for m in messages if inside(m)]
