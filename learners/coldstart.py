"""Rules that score a message before any model has learned anything.

They are deliberately simple and explainable: a lexicon for mood, cue words for urgency and the
policy's seed keywords for skill. The online learners blend away from them as labels arrive.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

from gateway.domain import Scores
from learners.base import SkillSeeds

VERSION = "rules-1"
HIT_LOGIT = 1.5
"""Logit per keyword hit: one hit makes a skill ~4.5 times as likely as a skill without one."""

_ASCII_WORD = re.compile(r"[a-z0-9']+")


def _ranges(codes: list[int]) -> str:
    """A regex character-class body for sorted code points, as compact `a-b` runs."""
    out, start = [], codes[0]
    for prev, cur in zip(codes, [*codes[1:], -1], strict=True):
        if cur != prev + 1:
            out.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
            start = cur
    return "".join(out)


_MARKS = _ranges(
    [c for c in range(0x20000) if unicodedata.category(chr(c)).startswith("M")] + list(range(0xE0100, 0xE01F0))
)
"""Combining marks (Devanagari vowel signs, Arabic harakat...): `\\w` leaves them out, which would cut
'भुगतान' into three 'words'. Built once from unicodedata (~15 ms) so the pattern follows the Unicode data."""
_UNSPACED = (
    r"\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f"
)
"""Scripts written without spaces (Thai, Lao, Myanmar, Khmer, kana, Han): one token per character, so the
keyword '返金' is found inside '返金してください' instead of needing the whole run as one word."""
_WORD = re.compile(rf"[{_UNSPACED}]|(?:[^\W_{_UNSPACED}]|[{_MARKS}]|')+")

POSITIVE = frozenset(
    "thanks thank great love awesome perfect happy excellent good helpful appreciate amazing nice "
    "wonderful fantastic resolved works glad pleased".split()
)
EMOTIONAL = frozenset(
    "angry furious terrible awful horrible worst hate unacceptable ridiculous disappointed annoyed "
    "frustrated frustrating useless bad poor scam waste wasted rude upset disgusting pathetic incompetent "
    "sucks suck joke nightmare ruined unhappy screwed disgrace shameful outrageous appalling appalled livid "
    "horrid horrific rudest".split()
)
"""Words that say how the customer feels about us: one of them is enough to read as frustrated."""
DESCRIPTIVE = frozenset("wrong lost cancelled canceled never stuck delayed broken fraud failed fails fail".split())
"""Words that say what went wrong, which calm customers use as much as angry ones ('I lost my card',
'my payment failed'): at full weight one of them alone put a third of airline-neutral and most banking
messages under the floor, so they count half an emotional word: it takes two negative signals to flag."""
PROFANITY = frozenset(
    "fuck fucking fucked fuckin fucken fck fcking shit shitty bullshit crap crappy damn damned goddamn "
    "goddamned bloody hell ass asshole bitch bastard piss pissed wtf".split()
)
"""Swearing at support is the clearest anger signal there is and the scorer used to read it as neutral,
so a profane refund request went to the bot; it outweighs a polite word or two ('thanks, but this is shit')."""
NEGATIVE = EMOTIONAL | DESCRIPTIVE | PROFANITY
WEIGHTS = {**dict.fromkeys(DESCRIPTIVE, 0.5), **dict.fromkeys(EMOTIONAL, 1.0), **dict.fromkeys(PROFANITY, 2.0)}
"""Negative weight per word; the tanh(score / 2) squash puts one emotional word (1.0) at -0.46, just under
the default -0.4 floor, and one descriptive word (0.5) at -0.24, above it until a second one or a '!' joins."""
_POLARITY = {**{w: -v for w, v in WEIGHTS.items()}, **dict.fromkeys(POSITIVE, 1.0)}
"""Each scored word's polarity before negation (positive words win, as in `sentiment`), one lookup per token."""
NEGATORS = frozenset("not no never don't doesn't didn't isn't wasn't can't cannot won't".split())
SECURITY = 0.7
"""A stolen card or a hacked account is P1 for any support team: the word alone reaches the default 0.8
urgent threshold (0.1 baseline + 0.7), because every minute the customer waits the damage can grow."""
URGENT_CUES = {
    "urgent": 0.5,
    "urgently": 0.5,
    "asap": 0.45,
    "immediately": 0.45,
    "emergency": 0.6,
    "now": 0.15,
    "today": 0.15,
    "outage": 0.45,
    "down": 0.2,
    "critical": 0.5,
    "deadline": 0.3,
    "locked": 0.3,
    "blocked": 0.3,
    "charged": 0.15,
    "twice": 0.15,
    "lawyer": 0.4,
    "chargeback": 0.4,
    "unacceptable": 0.3,
    "still": 0.15,
    "again": 0.1,
    **dict.fromkeys(
        "stolen stole theft hacked hacker hackers hijacked breach breached leaked unauthorised unauthorized "
        "fraud fraudulent compromised phishing".split(),
        SECURITY,
    ),
}


def words(text: str) -> list[str]:
    """Casefolded word tokens in any script; punctuation, symbols and emoji are separators.

    ASCII text keeps its historical tokenizer byte for byte (the seed lexicons and measured accuracy
    depend on it); other text is NFKC-normalised first so full-width 'ｒｅｆｕｎｄ' and 'refund' are one
    word, and a typographic apostrophe counts as one ("don’t" is a negator like "don't").
    """
    return list(_tokens(text))


@functools.lru_cache(maxsize=32)
def _tokens(text: str) -> tuple[str, ...]:
    """`words` as a tuple, cached: one score reads the same text (and each of its lines) up to five times, for
    mood, urgency, skill hits, the routine-question test and length. Only what one score needs is kept (the
    text and its lines, a few messages' worth): a scored text can be five 4,000-character messages."""
    if text.isascii():
        return tuple(_ASCII_WORD.findall(text.lower()))
    return tuple(_WORD.findall(unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")))


def sentiment(text: str) -> float:
    """Lexicon polarity in [-1, 1] with one-word negation; shouting pushes an already negative text down.

    '!' only deepens a negative text: enthusiasm ('Best airline around, hands down!') and plain impatience
    ('Where is my order!!') are not frustration, and used to land under the floor on '!' alone.
    """
    toks = _tokens(text)
    score = 0.0
    for i, tok in enumerate(toks):
        polarity = _POLARITY.get(tok)
        if polarity is None:  # adding the -0.0 of a neutral word never changed the sum
            continue
        if i and toks[i - 1] in NEGATORS:
            polarity = -polarity * 0.7
        score += polarity
    if score < 0:
        score -= 0.5 * min(text.count("!"), 4)
    return math.tanh(score / 2.0)


def _line_urgency(line: str) -> float:
    toks = _tokens(line)
    cues = {t for i, t in enumerate(toks) if t in URGENT_CUES and not (i and toks[i - 1] in NEGATORS)}
    raw = sum(URGENT_CUES[t] for t in cues)
    raw += 0.1 * min(line.count("!"), 3)
    if _shouting(line):
        raw += 0.3
    return raw


_ASCII_NON_LETTERS = bytes(c for c in range(256) if not chr(c).isalpha() or c > 127)
_ASCII_NON_UPPER = bytes(c for c in range(256) if not chr(c).isupper() or c > 127)


def _shouting(line: str) -> bool:
    """At least 12 letters, more than 60% of them capitals. An ASCII line is counted with `bytes.translate`
    (in ASCII the letters are exactly A-Z and a-z), ten times cheaper than testing character by character."""
    if line.isascii():
        raw = line.encode("ascii")
        n = len(raw.translate(None, _ASCII_NON_LETTERS))
        return n >= 12 and len(raw.translate(None, _ASCII_NON_UPPER)) / n > 0.6
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.6


def urgency(text: str) -> float:
    """Cue-word urgency in [0.1, 1]: the most urgent line, each distinct cue counted once.

    The pipeline scores the last five customer messages joined by newlines, so a sum over the text made
    five polite follow-ups ('any news today?') P1, and one sentence pasted twice doubled its score. The
    latest messages still count: an earlier 'my card was stolen' keeps the conversation urgent. A negated
    cue ('not urgent') does not count.
    """
    raw = max((_line_urgency(line) for line in text.splitlines()), default=0.0)
    return round(min(1.0, 0.1 + raw), 4)


@functools.lru_cache(maxsize=4096)
def _phrase(keyword: str) -> str | None:
    """A seed keyword as it is matched, or None when it has no word in it.

    None rather than "  ": a keyword of only symbols or emoji ('€', '👍') tokenises to nothing, and the
    empty phrase is exactly what any text without words normalises to, so it used to claim every emoji-only
    or '???' message (and, before the tokenizer read every script, every non-Latin one). Keywords come from
    the policy, so each is normalised once (re-tokenising every seed for every message was the scorer's
    largest cost).
    """
    toks = words(keyword)
    return f" {' '.join(toks)} " if toks else None


def unmatchable(keywords: Iterable[str]) -> list[str]:
    """The keywords that could never match a message (no letters or digits in any script).

    For whoever accepts keywords from people (the policy and the slash command) to refuse them with a
    message, instead of storing a rule that silently routes nothing.
    """
    return [kw for kw in keywords if _phrase(kw) is None]


def hits(text: str, skills: SkillSeeds) -> dict[str, int]:
    """Seed keywords of each skill found as whole words (or, in unspaced scripts, whole characters)."""
    toks = _tokens(text)
    present = set(toks)
    lowered = ""
    out: dict[str, int] = {}
    for name, seeds in skills.items():
        single, multi = _phrases(seeds)
        # A one-word phrase is in the padded text exactly when it is one of its tokens (tokens hold no spaces).
        n = sum(map(present.__contains__, single))
        if multi:
            lowered = lowered or f" {' '.join(toks)} "
            n += sum(map(lowered.__contains__, multi))
        out[name] = n
    return out


def hit_keywords(text: str, seeds: Sequence[str]) -> list[str]:
    """The distinct seed keywords `text` contains (first occurrence order), matched as `hits` matches them."""
    lowered = f" {' '.join(_tokens(text))} "
    return [kw for kw in dict.fromkeys(seeds) if (p := _phrase(kw)) is not None and p in lowered]


_Phrases = tuple[tuple[str, ...], tuple[str, ...]]
_PHRASES: dict[int, tuple[Sequence[str], _Phrases]] = {}


def _phrases(seeds: Sequence[str]) -> _Phrases:
    """One skill's matchable seeds: one-word ones as their token, longer ones as padded phrases. Duplicates
    are kept: each counts as a hit, as it always did.

    Kept per policy tuple by identity (tuples of strings cannot change; the stored reference keeps the id from
    being reused), because hashing the tuple on every message cost about what the matching did. Any other
    sequence (a list can be edited in place) is worked out afresh on every call.
    """
    hit = _PHRASES.get(id(seeds))
    if hit is not None and hit[0] is seeds:
        return hit[1]
    phrases = [p for kw in seeds if (p := _phrase(kw)) is not None]
    out = (tuple(p[1:-1] for p in phrases if p.count(" ") == 2), tuple(p for p in phrases if p.count(" ") > 2))
    if type(seeds) is tuple:
        if len(_PHRASES) >= 512:
            _PHRASES.clear()
        _PHRASES[id(seeds)] = (seeds, out)
    return out


def skill_distribution(text: str, skills: SkillSeeds) -> dict[str, float]:
    """Softmax over seed-keyword hits; with no hits every skill is equally likely."""
    return dict(_softmax(tuple(hits(text, skills).items())))


@functools.lru_cache(maxsize=1024)
def _softmax(counts: tuple[tuple[str, int], ...]) -> tuple[tuple[str, float], ...]:
    """Cached on the (skill, hit count) pairs: a policy's skills and the few hits a message has repeat endlessly,
    so the entries stay few (bounded all the same)."""
    exps = {name: math.exp(HIT_LOGIT * n) for name, n in counts}
    total = sum(exps.values())
    return tuple((name, round(v / total, 4)) for name, v in exps.items())


ROUTINE_OPENERS = tuple(tuple(p.split()) for p in (
    "how do i", "how can i", "how to", "how does", "how long", "how much", "how many",
    "can i", "could i", "may i", "do you", "does your", "are you", "is there", "is it possible",
    "where can i", "where do i", "what are your", "what is your", "which", "when are you", "when do you",
))
"""How a routine question starts: asking how to do something, whether we offer it, or when and where.
"Can I pay with PayPal?", "Do you ship to Canada?", "How do I unsubscribe from the newsletter?" carry no
skill keyword, and without one the prior stayed under the floor, so the bot never saw questions its KB
answers. Problems are told, not asked this way ("my payment failed", "why was I charged twice"), and an
opener does nothing against mood, urgency or length."""


def _by_first_word(phrases: Iterable[tuple[str, ...]]) -> dict[str, tuple[tuple[str, ...], ...]]:
    """So a line is compared with the few openers that can match it, not all of them."""
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for phrase in phrases:
        out[phrase[0]] = (*out.get(phrase[0], ()), phrase)
    return out


_OPENERS_BY_WORD = _by_first_word(ROUTINE_OPENERS)
GREETINGS = frozenset("hi hello hey hiya please so ok okay and also um".split())
"""Words that may come before the opener ("Hi, can I ..."): they do not change what is being asked."""
FOR_A_PERSON = frozenset(
    "speak talk chat someone somebody anyone person human agent representative manager supervisor operator "
    "staff".split()
)
"""A question asking to reach a person ("can I speak with somebody?") is a request for one, not a routine
question the bot should take."""
PROBLEM_TOPICS = frozenset(
    "complaint complaints complain claim claims reclamation issue issues problem problems trouble error errors "
    "report dispute".split()
)
"""A how-to about a problem ("how do I file a complaint?", "where can I report a payment issue?") is the
problem itself, people's work: the opener does not count with one of these or a negative word in the line."""
_NOT_ROUTINE = FOR_A_PERSON | PROBLEM_TOPICS | NEGATIVE
ROUTINE = 0.07
"""What a routine opener is worth: a keyword-less, calm, short routine question clears the default 0.6 floor
with or without a '?' (0.535 + 0.07, +0.05 with '?'); a descriptive problem word (-0.07) still pulls one
without '?' under it, an emotional word or any urgency far under it."""


def routine_question(text: str) -> bool:
    """A line starts like a routine question (`ROUTINE_OPENERS`) and neither asks for a person nor names a problem.

    >>> [routine_question(t) for t in ("Can I pay with PayPal?", "Hi, do you ship to Canada",
    ...                                "can i speak with somebody?", "My payment failed, can I pay again?",
    ...                                "how do I make a complaint?", "can I pay again, it failed")]
    [True, True, False, False, False, False]
    """
    for line in text.splitlines():
        toks = _tokens(line)
        start = next((i for i, t in enumerate(toks) if t not in GREETINGS), len(toks))
        head = toks[start:start + 4]
        openers = _OPENERS_BY_WORD.get(head[0], ()) if head else ()
        if any(head[: len(o)] == o for o in openers) and not _NOT_ROUTINE.intersection(toks):
            return True
    return False


CLEAR_CONF = 0.528
"""Skill confidence of one seed-keyword hit among the default five skills (softmax of HIT_LOGIT)."""


def automation_success(text: str, mood: float, urgent: float, skill_conf: float) -> float:
    """Prior chance the bot can finish alone: short, calm, clearly-topical messages do best.

    Anchored so a calm short message with one clear skill keyword ('I want a refund') scores ~0.65, above
    the default 0.6 floor: the bot answers those well, and requiring a '?' sent 'Where is my order' to
    people. From there an emotional or profane word, urgency of 0.3 or more, or more than ~40 words each
    pull it under the floor even with a '?' (worth only 0.05), as does having no skill keyword at all unless it
    is a routine question (`routine_question`: "Can I pay with PayPal?", worth 0.07); one
    descriptive problem word or a two-skill tie does so only without a '?'. More keyword hits buy some
    slack, but past 60 words nothing clears it, and mood under the sentiment floor or urgency over the
    automation ceiling send the message to people by the policy's own rules whatever this says. Length is
    that of the longest line: the text may be the last five messages joined, and a short back-and-forth is
    not one rambling message.
    """
    n = max((len(_tokens(line)) for line in text.splitlines()), default=0)
    p = 0.65 + 0.35 * (skill_conf - CLEAR_CONF)
    p += 0.05 if "?" in text else 0.0
    p += ROUTINE if routine_question(text) else 0.0
    p -= 0.3 * min(1.0, max(0.0, (n - 30) / 30))
    p -= 0.3 * max(0.0, -mood)
    p -= 0.6 * max(0.0, urgent - 0.1)
    return round(min(1.0, max(0.0, p)), 4)


class ColdStartScorer:
    """The `Scorer` used until the learners have seen enough labels, and the fallback when they drift."""

    def score(self, text: str, skills: SkillSeeds) -> Scores:
        mood = sentiment(text)
        urgent = urgency(text)
        dist = skill_distribution(text, skills)
        conf = max(dist.values())
        return Scores(
            sentiment=round(mood, 4),
            urgency=urgent,
            skill=dist,
            automation_success=automation_success(text, mood, urgent, conf),
            versions={"sentiment": VERSION, "urgency": VERSION, "skill": VERSION, "automation": VERSION},
        )
