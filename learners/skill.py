"""Skill learner: which team should take this message.

Classes are whatever skills outcomes name, never a fixed list: River's SoftmaxRegression grows a
weight vector the first time it meets a label and leaves the others untouched. Scoring is restricted
to the skills the *current* policy lists, so a skill removed from the policy stops receiving traffic.

A brand-new skill has no weight vector (logit 0) and would never beat a taught one, so its policy
keywords stay in play until it has labels of its own (`with_keyword_prior`), but only as evidence to
weigh: a keyword stops counting once the desk keeps labelling messages that contain it as other skills.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import ClassVar

from learners.coldstart import HIT_LOGIT
from learners.features import hashed_terms
from learners.text import TextLearner

TAUGHT_AT = 30
"""Labels after which a skill's own weights are trusted over its keywords. Measured on bitext (a skill added
to a model taught on the others): recalled 85% from 30 labels of its own and 97% from 50, against 0% with
none (50% with the keyword lift); the lift fades out linearly over those labels."""

CONTESTED_AT = 100
"""Labelled messages containing a keyword, none of them its skill, after which the keyword no longer lifts
that skill (linearly from none). The desk has then chosen another skill for it 60 times: in the replay of
review C (`skill add warranty … screen`, then "blank screen after the update" resolved as technical) the
screen messages went back to technical after ~50 corrections even on a model too young to be sure of
itself; a model that is sure (a warm one) wins after 5, through the margin test in `with_keyword_prior`.
Large enough that a keyword history merely shares with other skills ('order' in 32 of 300 bitext messages,
labelled general before an orders skill existed) still routes the new skill's messages."""


class SkillLearner(TextLearner):
    name: ClassVar[str] = "skill"

    def logits(self, text: str, skills: Iterable[str]) -> dict[str, float]:
        """The model's logit for each of the policy's skills (an untaught skill gets 0)."""
        x = self.features(text)
        weights = self.clf.weights  # type: ignore[attr-defined]
        logits: dict[str, float] = {}
        for skill in skills:
            w = weights.get(skill)
            logits[skill] = sum(w.get(i, 0.0) * v for i, v in x.items()) if w else 0.0
        return logits

    def taught(self, skill: str, taught_at: int = TAUGHT_AT) -> float:
        """How far the model's own weights for `skill` are trusted: its labels / `taught_at`, at most 1."""
        seen = self.tracker.class_labels.get(skill, 0)
        return 1.0 if taught_at <= 0 else min(1.0, seen / taught_at)

    def with_keyword_prior(
        self,
        logits: Mapping[str, float],
        hits: Mapping[str, int],
        taught_at: int = TAUGHT_AT,
        contested_at: int = CONTESTED_AT,
        keywords: Mapping[str, Iterable[str]] | None = None,
    ) -> dict[str, float]:
        """Lift the logit of an under-taught skill whose keywords the message contains.

        The keyword is evidence worth `HIT_LOGIT` per hit (the odds the cold-start rules give a hit over a
        miss), weighed against what the model knows instead of overriding it:

        - it is set `HIT_LOGIT` per hit above the model's *runner-up*, so it beats the favourite only when the
          model's margin (favourite minus runner-up) is smaller than the keywords' worth. A model that hesitates
          between skills, as it does on words it was never taught ('warranty claim please': margin 0.2), lets a
          new skill's keyword decide; one that has repeatedly been taught this kind of message ('blank screen
          after the update', margin 2.3 after five technical labels) keeps it. The lift used to be relative to
          the favourite: the untaught skill always won by 1.5 logits, however sure the model was.
        - each hit counts less as labelled messages containing that keyword pile up under other skills (from
          the TF-IDF document counts, `keyword_against`): after `contested_at` of them it no longer counts.
          Corrections away from the skill are exactly such labels; before, only the skill's own labels faded
          the lift, so correcting the misroute could never stop it.

        Without `keywords` (the hit keywords themselves) only the margin test applies. The lift fades
        linearly as the skill collects labels of its own; taught skills, and messages without hits, are left
        exactly as they are.
        """
        out = dict(logits)
        for skill, n in hits.items():
            t = self.taught(skill, taught_at) if n else 1.0
            if t >= 1.0 or skill not in logits:
                continue
            worth = float(n)
            if keywords is not None and contested_at > 0:
                seen = self.tracker.class_labels.get(skill, 0)
                worth = sum(
                    max(0.0, 1.0 - self.keyword_against(kw, seen) / contested_at) for kw in keywords.get(skill, ())
                )
            if worth <= 0.0:  # contested away: no lift at all (raised to the runner-up, it still took a share)
                continue
            # The runner-up of all skills, the keyword's own among them: with one other skill the favourite was
            # the runner-up, and any keyword beat any margin.
            ranked = sorted(logits.values(), reverse=True)
            runner_up = ranked[1] if len(ranked) > 1 else ranked[0]
            lifted = max(logits[skill], runner_up + HIT_LOGIT * worth)
            out[skill] = t * logits[skill] + (1 - t) * lifted
        return out

    def keyword_against(self, keyword: str, own_labels: int) -> int:
        """Labelled messages that contained `keyword` but were not its skill (at least; skill has `own_labels`).

        From the TF-IDF document counts: the fewest documents any of the keyword's words (and, for a phrase,
        its word pairs) occurred in, an upper bound on those holding the whole keyword (hashing can only add),
        minus the skill's own labels, which may all have contained it.
        """
        buckets = hashed_terms(keyword, self.tfidf.n_features)
        docs = min((self.tfidf.dfs.get(b, 0) for b in buckets), default=0)
        return max(0, docs - own_labels)

    def distribution(
        self,
        text: str,
        skills: Iterable[str],
        hits: Mapping[str, int] | None = None,
        taught_at: int = TAUGHT_AT,
        keywords: Mapping[str, Iterable[str]] | None = None,
    ) -> dict[str, float]:
        """Softmax over the policy's skills only; `hits` (keyword hits per skill) and `keywords` (which
        keywords hit) feed `with_keyword_prior`."""
        logits = self.logits(text, skills)
        if not logits:
            return {}
        if hits:
            logits = self.with_keyword_prior(logits, hits, taught_at, keywords=keywords)
        top = max(logits.values())
        exps = {s: math.exp(v - top) for s, v in logits.items()}
        total = sum(exps.values())
        return {s: v / total for s, v in exps.items()}

    def needs_keywords(self, skills: Mapping[str, Iterable[str]], taught_at: int = TAUGHT_AT) -> bool:
        """Whether any skill with keywords is under-taught: if not, scoring skips keyword matching entirely."""
        return any(self.taught(s, taught_at) < 1.0 for s, kws in skills.items() if kws)
