"""Whether a test logged a traceback: aiohttp logs a handler's unhandled exception through `logging`
("Error handling request"), and structlog renders an exception it is given on stdout."""

from __future__ import annotations

import pytest


def logged_tracebacks(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What was logged with an exception attached, from both logging and structlog, since the test began."""
    found = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]
    out = capsys.readouterr()
    found += [line for line in (out.out + out.err).splitlines() if "Traceback" in line]
    return found
