"""structlog set-up: JSON lines in production, a readable console in a terminal.

Two processors guard what leaves the process: known secrets are replaced wherever they appear, and
obvious PII (emails, card numbers, phone numbers) in free-text fields is masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from gateway.settings import LogFormat

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ()-]{6,18}\d")
STRUCTURAL_KEYS = frozenset(
    {"timestamp", "event", "level", "logger", "url", "ts", "entry", "worker", "conversation_id", "message_id",
     "channel", "route", "skill", "method", "status", "checkpoint"}
)
"""Keys whose values we generate ourselves: scanning them finds only false positives and costs time."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if _luhn(digits) else match.group(0)


def redact_pii(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub("[phone]", text)


class Redactor:
    """Masks secrets and PII in every string value of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if len(s) >= 6]

    def _clean(self, value: str, pii: bool) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, "[redacted]")
        return redact_pii(value) if pii else value

    def _walk(self, value: Any, pii: bool, depth: int = 0) -> Any:
        """Nested values too (a profile dict, a Slack response): secrets hide anywhere."""
        if isinstance(value, str):
            return self._clean(value, pii)
        if isinstance(value, BaseException):
            return self._clean(repr(value), pii)
        if depth > 6:
            return value
        if isinstance(value, dict):
            return {k: self._walk(v, pii and k not in STRUCTURAL_KEYS, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self._walk(v, pii, depth + 1) for v in value]
        return value

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            event[key] = self._walk(value, key not in STRUCTURAL_KEYS)
        return event


class ToStructlog(logging.Handler):
    """Libraries log through the standard library (slack_bolt, slack_sdk, aiohttp, asyncio). Their lines reached
    stderr as bare text between the JSON ones ("As you gave `client` as well, `token` will be unused." on every
    web start with a token), unparseable for a log pipeline and never masked. Here they go through the same
    processors: JSON, secrets and PII masked, with the library's logger name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            extra: dict[str, Any] = {"exc_info": record.exc_info} if record.exc_info else {}
            # Their text goes in `message`, which is masked for PII like any free text; `event` stays a name.
            # structlog knows the five standard levels only; a library's own (say 45) is rounded down to one.
            level = max(lvl for lvl in (10, 20, 30, 40, 50) if lvl <= max(record.levelno, 10))
            structlog.get_logger().log(level, "library_log", logger=record.name, message=record.getMessage(), **extra)
        except Exception:
            self.handleError(record)


def configure_logging(fmt: LogFormat = LogFormat.AUTO, level: str = "info", secrets: Iterable[str] = ()) -> None:
    use_json = fmt is LogFormat.JSON or (fmt is LogFormat.AUTO and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, ToStructlog)] + [ToStructlog()]
    # Libraries' own info chatter is not ours to show; their warnings and errors are.
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))
