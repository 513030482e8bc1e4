"""Fault suite fixtures: a private cluster per test, and the summary table at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults import ledger
from tests.faults.cluster import Cluster, start_cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = await start_cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ledger.ROWS:
        return
    terminalreporter.section("fault injection: messages sent / lost / duplicated")
    for line in ledger.table():
        terminalreporter.write_line(line)
