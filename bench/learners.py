"""Learner benchmarks on the real data in ../shared/data; prints figures, writes nothing.

    python bench/learners.py [--quick]

1. scoring latency of `LearnerScorer.score` with all four learners and a 5-skill policy;
2. `learn_one` cost per learner;
3. banking77 (77 intents) online holdout vs scikit-learn TF-IDF + LogisticRegression, same split;
4. airline tweets sentiment, time-ordered, same comparison;
5. snapshot size and dump/load time after 100k messages, plus the hashed-table worst case.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learners.automation import automation_input
from learners.datasets import BITEXT_SKILL, DATA, SKILLS
from learners.features import N_FEATURES
from learners.service import LearnerScorer
from learners.skill import SkillLearner
from learners.snapshot import dump, load, new_learners
from learners.text import TextLearner


def read(rel: str) -> list[dict[str, str]]:
    with (DATA / rel).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def fmt_us(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e6:7.1f} us   p99 {pct(xs, 0.99) * 1e6:7.1f} us"


def sklearn_baseline(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2))
    x = vec.fit_transform([t for t, _ in train])
    clf = LogisticRegression(max_iter=2000).fit(x, [y for _, y in train])
    pred = clf.predict(vec.transform([t for t, _ in test]))
    return float(sum(p == y for p, (_, y) in zip(pred, test, strict=True)) / len(test))


def online(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> tuple[float, float, float]:
    learner = SkillLearner()
    started = time.perf_counter()
    for text, label in train:
        learner.learn_one(text, label)
    secs = time.perf_counter() - started
    acc = sum(learner.predict_one(t) == y for t, y in test) / len(test)
    return acc, learner.tracker.rolling_accuracy or 0.0, secs


def compare(title: str, train: list[tuple[str, str]], test: list[tuple[str, str]]) -> None:
    acc, rolling, secs = online(train, test)
    batch = sklearn_baseline(train, test)
    majority = Counter(y for _, y in test).most_common(1)[0][1] / len(test)
    print(f"{title}: train {len(train)} / test {len(test)}, majority class {majority:.4f}")
    print(f"  River online holdout     {acc:.4f}   (one pass, {secs:.1f}s, last-200 prequential {rolling:.3f})")
    print(f"  sklearn batch holdout    {batch:.4f}   (TfidfVectorizer(1,2) + LogisticRegression)")
    print(f"  online / batch           {acc / batch:.3f}   (goal >= 0.98)")


def latency(quick: bool) -> dict[str, TextLearner]:
    rows = read("bitext/bitext_customer_support.csv")
    random.Random(0).shuffle(rows)
    learners = new_learners()
    rng = random.Random(1)
    learn: dict[str, list[float]] = {name: [] for name in learners}
    n_train = 1500 if quick else 3000
    for r in rows[:n_train]:
        text = r["instruction"]
        for name, x, y in (
            ("skill", text, BITEXT_SKILL.get(r["category"], "general")),
            ("sentiment", text, rng.choice(["negative", "neutral", "positive"])),
            ("urgency", text, rng.random() < 0.3),
            ("automation", automation_input(text, {"sentiment": 0.1, "urgency": 0.2}), rng.random() < 0.5),
        ):
            t = time.perf_counter()
            learners[name].learn_one(x, y)
            learn[name].append(time.perf_counter() - t)
    print(f"learn_one per learner ({n_train} bitext messages, 5 skills):")
    for name, xs in learn.items():
        print(f"  {name:<11} {fmt_us(xs)}")
    probes = [r["instruction"] + f" #{i}" for i, r in enumerate(rows[n_train : n_train + 3000])]
    for label, min_labels in (("models only (weight 1)", 1), ("blending with rules (0 < weight < 1)", 10**9)):
        scorer = LearnerScorer(learners, min_labels=min_labels, min_evaluated=10**9)
        times = []
        for text in probes:
            t = time.perf_counter()
            scorer.score(text, SKILLS)
            times.append(time.perf_counter() - t)
        print(f"score(), all four learners, 5 skills, {label}: {fmt_us(times)}")
    return learners


def snapshot_size(quick: bool) -> None:
    n = 20_000 if quick else 100_000
    bitext = [
        (r["instruction"], BITEXT_SKILL.get(r["category"], "general"))
        for r in read("bitext/bitext_customer_support.csv")
    ]
    tweets = [(r["text"], r["airline_sentiment"]) for r in read("airline_tweets/tweets.csv")]
    banking = [r["text"] for r in read("banking77/train.csv")]
    learners = new_learners()
    rng = random.Random(2)
    started = time.perf_counter()
    for i in range(n):
        text, skill = bitext[i % len(bitext)] if i % 2 else (banking[i % len(banking)], "general")
        learners["skill"].learn_one(text, skill)
        t_text, mood = tweets[i % len(tweets)]
        learners["sentiment"].learn_one(t_text, mood)
        learners["urgency"].learn_one(text, rng.random() < 0.2)
        learners["automation"].learn_one(automation_input(t_text, {"urgency": rng.random()}), rng.random() < 0.6)
    print(f"snapshot after {n:,} messages per learner ({time.perf_counter() - started:.0f}s of learning):")
    total = 0
    for name, learner in learners.items():
        t = time.perf_counter()
        blob = dump(learner, 1)
        t_dump = time.perf_counter() - t
        t = time.perf_counter()
        load(blob, name)
        t_load = time.perf_counter() - t
        total += len(blob)
        dfs = len(learner.tfidf.dfs)
        print(
            f"  {name:<11} {len(blob) / 1e6:6.2f} MB  dump {t_dump * 1e3:6.1f} ms  load {t_load * 1e3:6.1f} ms"
            f"  (dfs buckets used {dfs:,}/{N_FEATURES:,})"
        )
    print(f"  total       {total / 1e6:6.2f} MB")
    # Worst case: every bucket used by every class, which is where 1,000,000 messages of open-ended
    # customer language heads. Hashing makes this the ceiling, not an estimate.
    worst = SkillLearner()
    worst.learn_one("seed", "general")
    worst.tfidf.dfs.update({i: 10**6 for i in range(N_FEATURES)})
    for skill in SKILLS:
        worst.clf.weights[skill].update({i: rng.random() for i in range(N_FEATURES)})  # type: ignore[attr-defined]
    t = time.perf_counter()
    blob = dump(worst, 1)
    t_dump = time.perf_counter() - t
    t = time.perf_counter()
    load(blob, "skill")
    t_load = time.perf_counter() - t
    dfs_bytes = len(pickle.dumps(worst.tfidf.dfs))
    per_class = (len(blob) - dfs_bytes) / len(SKILLS)
    together = 4 * dfs_bytes + (5 + 3 + 1 + 1) * per_class  # skill 5, sentiment 3, two binary vectors
    print(
        f"worst case, every one of {N_FEATURES:,} buckets used by every class: skill (5 skills) "
        f"{len(blob) / 1e6:.2f} MB, dump {t_dump * 1e3:.0f} ms, load {t_load * 1e3:.0f} ms; "
        f"{per_class / 1e6:.2f} MB per class; all four learners <= {together / 1e6:.1f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs for a smoke test")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings only
    print(f"# learners bench (python {sys.version.split()[0]}, N_FEATURES={N_FEATURES:,})")
    latency(args.quick)

    rows = [(r["text"], r["category"]) for r in read("banking77/train.csv")]
    random.Random(0).shuffle(rows)
    cut = int(0.8 * len(rows))
    if args.quick:
        rows, cut = rows[:3000], 2400
    compare("banking77 (shuffled 80/20 split)", rows[:cut], rows[cut:])

    tweets = sorted(read("airline_tweets/tweets.csv"), key=lambda r: r["tweet_created"])
    pairs: list[Any] = [(r["text"], r["airline_sentiment"]) for r in tweets]
    cut = int(0.8 * len(pairs))
    compare("airline tweets sentiment (time-ordered: first 80% -> last 20%)", pairs[:cut], pairs[cut:])

    snapshot_size(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
