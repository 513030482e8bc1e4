"""router/ stays pure: no I/O libraries imported, and the SLA ladder never fires a step twice."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from router.policy import load_policy
from router.sla import SlaState, SlaStep, actions_due, deadlines

ROUTER = Path(__file__).resolve().parents[1] / "router"
FORBIDDEN = ("redis", "aiohttp", "slack_bolt", "slack_sdk", "requests", "httpx", "socket", "subprocess")
POLICY = load_policy()


def test_router_imports_no_io_libraries() -> None:
    for path in ROUTER.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


@settings(max_examples=200, deadline=None)
@given(
    skill=st.sampled_from(sorted(POLICY.skills)),
    claimed=st.sampled_from([None, "U1"]),
    responded=st.booleans(),
    done=st.sets(st.sampled_from([s.value for s in SlaStep])),
    elapsed=st.floats(0, 20_000),
    claimed_at=st.one_of(st.none(), st.floats(0, 20_000)),
)
def test_sla_ladder_fires_at_most_one_new_step(skill, claimed, responded, done, elapsed, claimed_at) -> None:
    state = SlaState("conv_p", skill, waiting_since=0.0, claimed_by=claimed, responded=responded,
                     done=frozenset(done), claimed_at=claimed_at)
    plan = deadlines(state, POLICY)
    assert [at for _, at in plan] == sorted(at for _, at in plan)
    actions = actions_due(state, POLICY, elapsed)
    assert len(actions) <= 1
    for a in actions:
        assert a.step.value not in done and a.reason and a.channel
        assert a.step in {step for step, at in plan if at <= elapsed}
        # Firing it and asking again never repeats the same or an earlier step.
        after = SlaState("conv_p", skill, 0.0, claimed, responded, done=frozenset(done | {a.step.value}),
                         claimed_at=claimed_at)
        assert actions_due(after, POLICY, elapsed) == []
