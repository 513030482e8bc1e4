"""Whether a typed live change, re-run on a running canary's candidate, overwrites the canary's own change.

Why not `policy_store.carry`'s merge: a typed change is re-run on the candidate, so it composes item by
item where the typed command does (adding a keyword to a list the canary also extended keeps both
keywords), and carry's rule, which treats a list as one field, would refuse that for nothing. What must
be refused is the case the re-run hides: a field the canary set itself ending up with the live value, so
the canary silently stops being its change while it keeps advertising it (and its stats compare two
identical arms). That includes a field the live change leaves as it was but whose builder also resets it
on the candidate ("automation resume everywhere" unpausing a skill the canary paused), which a
before/after comparison of the live policy alone would miss.
"""

from __future__ import annotations

from typing import Any

from router.policy import Policy

_ABSENT = object()


def overwritten(before: Policy, after: Policy, own: Policy, followed: Policy) -> str | None:
    """The first field (dotted path) the canary changed itself (`own` differs from the live `before`) that
    the re-run (`own` → `followed`) replaced with the live policy's new value (`after`), else None."""
    b, a, o, f = (p.model_dump(mode="json", exclude={"version"}) for p in (before, after, own, followed))
    return _lost(b, a, o, f, "")


def _lost(before: Any, after: Any, own: Any, followed: Any, path: str) -> str | None:
    if own == before or followed == own:
        return None  # not the canary's change, or the re-run left it alone
    if all(isinstance(x, dict) for x in (before, after, own, followed)):
        for key in sorted(before.keys() | after.keys() | own.keys() | followed.keys()):
            found = _lost(before.get(key, _ABSENT), after.get(key, _ABSENT), own.get(key, _ABSENT),
                          followed.get(key, _ABSENT), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    return (path or "the policy") if followed == after else None
