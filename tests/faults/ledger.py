"""Per-scenario tally for the end-of-suite table; filled by each fault test as it asserts its end state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    scenario: str
    sent: int
    lost: int
    duplicated: int
    note: str = ""
    known_bug: bool = False


ROWS: list[Row] = []


def record(scenario: str, sent: int, lost: int, duplicated: int, note: str = "", known_bug: bool = False) -> None:
    """Recorded before the assertions, so a failing scenario still shows its numbers in the table.

    `known_bug` rows (strict-xfail demonstrations) are listed but kept out of the totals, which must read 0.
    """
    ROWS.append(Row(scenario, sent, lost, duplicated, note, known_bug))


def table() -> list[str]:
    counted = [r for r in ROWS if not r.known_bug]
    label = f"TOTAL ({len(counted)} scenarios run, known-bug rows excluded)"
    width = max([len(r.scenario) for r in ROWS] + [len(label)])
    lines = [f"{'scenario':<{width}}  {'sent':>6}  {'lost':>5}  {'dup':>5}  note"]
    for r in ROWS:
        lines.append(f"{r.scenario:<{width}}  {r.sent:>6}  {r.lost:>5}  {r.duplicated:>5}  {r.note}")
    total_sent = sum(r.sent for r in counted)
    lost = sum(r.lost for r in counted)
    dup = sum(r.duplicated for r in counted)
    lines.append(f"{label:<{width}}  {total_sent:>6}  {lost:>5}  {dup:>5}")
    return lines
