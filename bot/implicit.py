"""Implicit feedback: what the person who asked does anyway right after an answer.

Read against the answer they saw last (in the same conversation; else in the same channel,
within ``window_s``), their next message is one of (:func:`asked_again`):

- the **same question again** (its words nearly all the same: :func:`similarity` >=
  ``RETRY_SIMILARITY``) within the window: a **retry**. The new answer is preferred to the
  first; the pair is kept (trainer.dataset makes a comparison of it).
- the **question in other words** (``REPHRASE_SIMILARITY`` <= similarity < retry, and at
  least ``REPHRASE_SHARED`` content words in common) within the window: a **rephrase**,
  the answer implicitly failed. One word in common is a topic in common, not the same
  question: "do you like pizza" then "do you like cats", or "what is python" then "who
  created python" (a follow-up), are other questions, in a thread as in a channel.
- a **reply** that thanks or complains: scored by VADER (:mod:`vaderSentiment`, a lexicon
  that ships in the package and runs offline on a CPU) and a few patterns VADER misses
  ("that's wrong", "not what I asked"). Outside the answer's conversation only words about
  an answer count ("thanks", "that's wrong"), not a new message's mood ("I am so tired").
  A question, or a message with no clear verdict, is nothing: a conversation that simply
  goes on is not approval.

Each becomes its own kind of row (storage.repository.signals), never a fake vote; the
trainer weighs each kind by its agreement with people's own votes (trainer.dataset).
Retry by asking again rather than by a 🔁 reaction: it is what people do anyway, needs no
extra reaction on every answer, and reads the same on every platform and in the shell.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import cache

from bot.events import IncomingPrompt, IncomingReply
from storage.identity import PersonKeys
from storage.repository import AnswerShown, Repository, VoteOutcome

log = logging.getLogger(__name__)

RETRY_SIMILARITY = 0.8  # this share of content words in common: the same question
REPHRASE_SIMILARITY = 0.3  # this share, but less than a retry's: the question in other words...
REPHRASE_SHARED = 2  # ...with at least this many content words in common (one is a topic, not a question)
POSITIVE_AT = 0.5  # VADER compound score at or above: a thanks (a question never is)
NEGATIVE_AT = -0.5  # at or below: a complaint

_WORD = re.compile(r"[a-z0-9']+")
# Words that carry no content of a question ("what is a haiku" vs "what's a haiku"; "define
# haiku" asks it again): function words and the words that only frame a question.
_STOP = frozenset(
    {
        *("a", "an", "the", "is", "are", "am", "was", "were", "be", "been", "do", "does", "did", "can", "could"),
        *("would", "should", "will", "shall", "may", "might", "must", "have", "has", "had"),
        *("what", "whats", "what's", "who", "how", "why", "when", "where", "which", "whether"),
        *("i", "i'm", "me", "my", "we", "us", "our", "you", "your", "it", "its", "it's", "they", "them", "their"),
        *("this", "that", "these", "those", "there", "some", "any", "so", "very", "really", "just"),
        *("of", "to", "in", "on", "at", "by", "for", "from", "with", "as", "and", "or", "if", "than"),
        *("about", "please", "tell", "explain", "describe", "define", "mean", "means", "meaning", "again"),
    }
)
_COMPLAINT = re.compile(
    r"(?i)\b(?:not what i (?:asked|meant|wanted)|(?:that|this|it)(?:'s| is| was)"
    r" (?:wrong|incorrect|not right|not true|not it|nonsense|useless|not helpful)"
    r"|(?:makes|made) no sense|you(?:'re| are) wrong|wrong answer|didn'?t (?:answer|help))\b"
    r"|^\s*(?:no|nope|wrong)\s*[.!,]"
)
_THANKS = re.compile(r"(?i)\b(?:thanks|thank you|thx|ty|perfect|exactly|that helps|helpful|great answer)\b")
_QUESTION = re.compile(r"(?i)\?\s*$|^\s*(?:what|who|how|why|when|where|which|can|could|would|is|are|do|does)\b")


@dataclass(frozen=True)
class Reading:
    """What a reply says about the answer before it: a kind and a score, or nothing (kind None)."""

    kind: str | None  # reply_positive, reply_negative, or None: no verdict
    value: float = 0.0  # in [-1, 1]


@cache
def _vader() -> object:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER's compound score of ``text``, in [-1, 1]."""
    scores = _vader().polarity_scores(text)  # type: ignore[attr-defined]
    return float(scores["compound"])


def read_reply(text: str, *, about_it_only: bool = False) -> Reading:
    """A thanks, a complaint, or nothing (pure: patterns first, then VADER's score).

    ``about_it_only``: only words about an answer count (a complaint or a thanks pattern),
    not the mood of the text: for a new question outside the answer's conversation."""
    text = text.strip()
    if not text:
        return Reading(None)
    if _COMPLAINT.search(text):
        return Reading("reply_negative", -1.0)
    score = sentiment(text)
    if _THANKS.search(text) and score > 0:
        return Reading("reply_positive", max(score, POSITIVE_AT))
    if about_it_only or _QUESTION.search(text):
        return Reading(None)  # a question goes on with the conversation, whatever its words
    if score >= POSITIVE_AT:
        return Reading("reply_positive", score)
    if score <= NEGATIVE_AT:
        return Reading("reply_negative", score)
    return Reading(None)


# Inflections taken off a word (the first that fits), and what replaces them: "volcanoes" and
# "volcano", "eruptions" and "erupt", "cities" and "city" meet. Derivations stay apart.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    *(("ies", "y"), ("ied", "y"), ("ings", ""), ("ing", ""), ("ions", ""), ("ion", "")),
    *(("ed", ""), ("es", ""), ("s", "")),
)
MIN_STEM = 3  # letters a stem keeps at least ("bus", "thing" and "need" stay whole)


def stem(word: str) -> str:
    """``word`` without its inflection, and without a final "e" ("make", "makes" and "making"
    are "mak"); a doubled last consonant is single again ("running", "stopped")."""
    word = word.removesuffix("'s")
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= MIN_STEM:
            word = word[: -len(suffix)] + replacement
            if suffix in ("ing", "ings", "ed") and word[-1] == word[-2] and word[-1] not in "aeiouylsz":
                word = word[:-1]
            break
    return word[:-1] if len(word) > MIN_STEM and word.endswith("e") else word


def content_words(text: str) -> frozenset[str]:
    """The words that carry a question's content (stop words aside), each by its :func:`stem`."""
    return frozenset(stem(word) for word in _WORD.findall(text.casefold()) if word not in _STOP)


def similarity(first: str, second: str) -> float:
    """Jaccard overlap of the two texts' content words (1.0: the same words, case and stop words aside)."""
    a, b = content_words(first), content_words(second)
    if not a and not b:
        return 1.0 if first.strip().casefold() == second.strip().casefold() else 0.0
    return len(a & b) / len(a | b)


def asked_again(first: str, second: str) -> str | None:
    """Whether ``second`` asks ``first`` again: "retry" (the same question), "rephrase" (the
    question in other words: a share of its content words and at least ``REPHRASE_SHARED`` of
    them the same), or None (another question, or not a question of it at all)."""
    alike = similarity(first, second)
    if alike >= RETRY_SIMILARITY:
        return "retry"
    shared = content_words(first) & content_words(second)
    if alike >= REPHRASE_SIMILARITY and len(shared) >= REPHRASE_SHARED:
        return "rephrase"
    return None


@dataclass(frozen=True)
class Retry:
    """A prompt that asks the question of ``first`` again: stored once the new answer is."""

    first: AnswerShown
    person: str


class ImplicitSignals:
    """Reads people's next messages after an answer into stored implicit signals."""

    def __init__(self, *, repository: Repository, persons: PersonKeys, window_s: float = 300.0) -> None:
        self.repository = repository
        self.persons = persons
        self.window_s = window_s  # how soon a retry or a rephrase must follow the answer

    async def _shown(self, *, platform: str, channel: str, person: str, conversation: str | None) -> AnswerShown | None:
        return await self.repository.answer_shown_before(
            author=person,
            conversation=conversation,
            platform=platform,
            channel=channel,
            since=time.time() - self.window_s,
        )

    async def before_answer(self, prompt: IncomingPrompt, text: str) -> Retry | None:
        """A prompt about to be answered: read it against the answer its author saw last.

        A rephrase or a reply verdict is stored now; a retry is returned, to be stored with
        the new answer (:meth:`after_answer`)."""
        person = self.persons.key(prompt.platform, prompt.user)
        shown = await self._shown(
            platform=prompt.platform, channel=prompt.channel, person=person, conversation=prompt.conversation
        )
        if shown is None:
            return None
        again = asked_again(shown.prompt_text, text) if time.time() - shown.asked_at <= self.window_s else None
        if again == "retry":
            return Retry(first=shown, person=person)
        if again == "rephrase":
            await self._store(shown, person=person, kind="rephrase", value=-1.0, platform=prompt.platform)
            return None
        await self._read(shown, person=person, text=text, platform=prompt.platform, conversation=prompt.conversation)
        return None

    async def after_answer(self, retry: Retry, response_id: int, *, platform: str) -> None:
        """The retried question has its new answer: the first counts as worse than it."""
        await self._store(
            retry.first, person=retry.person, kind="retry", value=-1.0, platform=platform, better=response_id
        )

    async def on_reply(self, reply: IncomingReply) -> VoteOutcome | None:
        """A message that is not a prompt (a Slack thread reply that does not address the bot):
        a thanks or a complaint about the answer its author saw last there; None: no verdict."""
        person = self.persons.key(reply.platform, reply.user)
        shown = await self._shown(
            platform=reply.platform, channel=reply.channel, person=person, conversation=reply.conversation
        )
        if shown is None:
            return None
        return await self._read(
            shown,
            person=person,
            text=reply.text,
            platform=reply.platform,
            conversation=reply.conversation,
            event=reply.event_id,
        )

    async def _read(
        self,
        shown: AnswerShown,
        *,
        person: str,
        text: str,
        platform: str,
        conversation: str | None,
        event: str | None = None,
    ) -> VoteOutcome | None:
        """``text``, said in ``conversation``, read as a verdict on ``shown``. Outside the
        answer's conversation a message is a new topic: its mood ("I am so tired") is no
        verdict on the answer, only words about an answer are."""
        in_conversation = conversation is not None and conversation == shown.conversation
        reading = read_reply(text, about_it_only=not in_conversation)
        if reading.kind is None:
            return None
        return await self._store(
            shown, person=person, kind=reading.kind, value=reading.value, platform=platform, text=text, event=event
        )

    async def _store(
        self,
        shown: AnswerShown,
        *,
        person: str,
        kind: str,
        value: float,
        platform: str,
        text: str = "",
        better: int | None = None,
        event: str | None = None,
    ) -> VoteOutcome:
        outcome = await self.repository.record_signal(
            response_id=shown.response_id,
            person=person,
            kind=kind,
            value=value,
            text=text,
            better_response_id=better,
            event=(platform, event) if event else None,
        )
        # Never the text or who: the kind, the answer and what became of it.
        log.info("%s: implicit %s on answer %d -> %s", platform, kind, shown.response_id, outcome.value)
        return outcome
