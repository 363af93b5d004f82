"""Comparison mode: two candidates shown as 1️⃣ / 2️⃣, rated with one verdict (pure code).

A verdict is stored as one vote per candidate, same voter and emoji, so the trainer's
existing rule (candidates of one prompt rated differently make a preference pair)
needs no special case: 1️⃣ gives +1 to the first and -1 to the second, 2️⃣ the
reverse; 🤝 (tie) gives 0 to both and 👎 (both bad) -1 to both, and neither is a pair.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections import deque
from collections.abc import Sequence

from bot.feedback import normalize_emoji

FIRST_EMOJI = "1\ufe0f\u20e3"  # 1️⃣
SECOND_EMOJI = "2\ufe0f\u20e3"  # 2️⃣
TIE_EMOJI = "🤝"
BOTH_BAD_EMOJI = "👎"

# Reactions pre-added to a comparison (canonical unicode); an answer gets bot.events.RATING_REACTIONS.
COMPARE_REACTIONS: tuple[str, ...] = (FIRST_EMOJI, SECOND_EMOJI, TIE_EMOJI, BOTH_BAD_EMOJI)

_PREFIX = re.compile(r"(?is)^\s*compare\s*:\s*(.*)$")


class Verdict(enum.Enum):
    FIRST = "first"  # 1️⃣ is better
    SECOND = "second"  # 2️⃣ is better
    TIE = "tie"  # 🤝 equally good
    BOTH_BAD = "both_bad"  # 👎 neither is good

    @property
    def emoji(self) -> str:
        """The canonical emoji the verdict's votes are stored under."""
        return _EMOJI[self]

    @property
    def rewards(self) -> tuple[float, float]:
        """(reward of candidate 0, reward of candidate 1)."""
        return _REWARDS[self]


_EMOJI = {
    Verdict.FIRST: FIRST_EMOJI,
    Verdict.SECOND: SECOND_EMOJI,
    Verdict.TIE: TIE_EMOJI,
    Verdict.BOTH_BAD: BOTH_BAD_EMOJI,
}
_REWARDS = {
    Verdict.FIRST: (1.0, -1.0),
    Verdict.SECOND: (-1.0, 1.0),
    Verdict.TIE: (0.0, 0.0),
    Verdict.BOTH_BAD: (-1.0, -1.0),
}
# The verdicts by emoji in normal form (bot.feedback.normalize_emoji: no variation selector,
# Slack's `-1` and `thumbsdown` are 👎 through bot.feedback.ALIASES), and Slack's names of the
# other three, which stay names of their own in a rating (a vote stores them as they are).
_NAMES: dict[str, Verdict] = {
    normalize_emoji(name): verdict
    for names, verdict in (
        ((FIRST_EMOJI, "one"), Verdict.FIRST),
        ((SECOND_EMOJI, "two"), Verdict.SECOND),
        ((TIE_EMOJI, "handshake"), Verdict.TIE),
        ((BOTH_BAD_EMOJI,), Verdict.BOTH_BAD),
    )
    for name in names
}


def verdict_of(emoji: str) -> Verdict | None:
    """The verdict a reaction on a comparison stands for; None for any other emoji."""
    return verdict_named(normalize_emoji(emoji))


def verdict_named(name: str) -> Verdict | None:
    """:func:`verdict_of` for an emoji already in normal form (see :func:`bot.feedback.normalize_emoji`)."""
    return _NAMES.get(name)


def verdict_for(first_good: bool, second_good: bool) -> Verdict:
    """The verdict of someone who finds each side good or not."""
    if first_good == second_good:
        return Verdict.TIE if first_good else Verdict.BOTH_BAD
    return Verdict.FIRST if first_good else Verdict.SECOND


def split_compare_request(text: str) -> tuple[bool, str]:
    """``compare: why is the sky blue`` -> (True, "why is the sky blue"); else (False, text)."""
    match = _PREFIX.match(text)
    return (True, match.group(1).strip()) if match else (False, text)


def render_comparison(first: str, second: str) -> str:
    """The text of one comparison message."""
    return (
        f"{FIRST_EMOJI} {first}\n{SECOND_EMOJI} {second}\n"
        f"(react {FIRST_EMOJI} or {SECOND_EMOJI} for the better one, {TIE_EMOJI} if equal, "
        f"{BOTH_BAD_EMOJI} if both are bad)"
    )


def uncertainty(score: float) -> float:
    """How unsure a reward head is of one answer: p (1 - p) of its 'people like it' probability
    (0.25 at 0.5, near 0 where it is sure either way); ``score`` is the head's logit."""
    p = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, score))))
    return p * (1.0 - p)


class AutoComparisons:
    """THUMBTUNE_COMPARE=auto: which answers to show as a comparison, asking where it matters.

    Given the serving version's reward scores of a prompt's candidates, the two it is least
    sure of (by :func:`uncertainty`) are the pair to show, and the prompt's need is their
    summed uncertainty. A prompt becomes a comparison when its need is among the top
    ``share`` of the last ``window`` prompts' and fewer than ``share`` of those prompts were
    comparisons, so no stretch of traffic is asked more than the share (uncertainty
    sampling, as in active learning: a verdict teaches a logistic reward model most near its
    decision boundary). Until ``warmup`` prompts have been seen, and for a version without a
    ranking reward model (no scores), a prompt is a comparison with probability ``share``:
    then nothing says where the model is unsure.
    """

    def __init__(self, share: float, *, window: int = 200, warmup: int = 20, rng: random.Random | None = None) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be from 0 to 1")
        self.share = share
        self.warmup = warmup
        self.needs: deque[float] = deque(maxlen=window)  # the last prompts' needs (scored prompts only)
        self.asked: deque[bool] = deque(maxlen=window)  # whether each of the last prompts was a comparison
        self.rng = rng or random.Random()

    def at_random(self) -> bool:
        """For a prompt with no scores to go by: a comparison with probability ``share``."""
        chosen = self._drawn()
        self.asked.append(chosen)
        return chosen

    def choose(self, scores: Sequence[float]) -> tuple[int, int] | None:
        """Indices of the two candidates to compare (lower index first), or None for one answer."""
        if len(scores) < 2:
            self.asked.append(False)
            return None
        unsure = sorted(range(len(scores)), key=lambda i: (-uncertainty(scores[i]), i))[:2]
        need = sum(uncertainty(scores[i]) for i in unsure)
        chosen = self._drawn() if len(self.needs) < self.warmup else need >= self._cut() and self._room()
        self.needs.append(need)
        self.asked.append(chosen)
        first, second = sorted(unsure)
        return (first, second) if chosen else None

    def _drawn(self) -> bool:
        """A comparison at random: with probability ``share``, room left."""
        return self.rng.random() < self.share and self._room()

    def _cut(self) -> float:
        """The need at the top ``share`` of the last prompts' needs."""
        ranked = sorted(self.needs)
        return ranked[min(len(ranked) - 1, math.floor((1.0 - self.share) * len(ranked)))]

    def _room(self) -> bool:
        """Whether one more comparison keeps the last prompts' share of comparisons within ``share``."""
        return self.share > 0 and sum(self.asked) + 1 <= self.share * max(len(self.asked) + 1, 1 / self.share)
