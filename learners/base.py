"""The contract between the worker and whatever scores a conversation.

The worker only knows `Scorer`; cold-start rules and the online River learners both satisfy it, so
the gateway's code path is the same on day one and on day one hundred.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway.domain import Scores

SkillSeeds = Mapping[str, Sequence[str]]
"""skill name -> seed keywords, straight from the policy (skills are data, never code)."""


class Scorer(Protocol):
    def score(self, text: str, skills: SkillSeeds) -> Scores:
        """Score the customer's side of a conversation against the policy's skills."""
        ...
