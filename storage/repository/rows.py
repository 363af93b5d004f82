"""The rows the repository hands out and takes in: small frozen values, no queries."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class NewResponse:
    text: str
    model_version: int
    temperature: float
    top_p: float
    max_new_tokens: int
    score: float | None = None  # the reward model's, when it ranked the candidates


@dataclass(frozen=True)
class StoredAnswer:
    prompt_id: int
    response_ids: tuple[int, ...]


@dataclass(frozen=True)
class PendingPrompt:
    """A prompt taken (and acknowledged) but not answered yet: what answering it later needs."""

    pending_id: int
    platform: str
    channel: str
    thread: str | None  # where the answer goes, as the adapter names it; None: not placed yet
    user: str  # the platform's id of who asked
    text: str
    conversation: str | None
    event_id: str | None
    received_at: float
    prompt_id: int | None  # the stored answer, once generated


@dataclass(frozen=True)
class StoredCandidate:
    """One candidate of a stored answer, as a reply shows it."""

    response_id: int
    text: str
    model_version: int


@dataclass(frozen=True)
class ResponseRef:
    """What a reaction needs to know about the answer it landed on."""

    response_id: int
    prompt_id: int
    candidate: int
    model_version: int
    flagged: bool


@dataclass(frozen=True)
class ComparisonRef:
    """A prompt shown as a comparison: its two candidates, in the order shown."""

    prompt_id: int
    first: ResponseRef
    second: ResponseRef

    @property
    def response_ids(self) -> tuple[int, int]:
        return (self.first.response_id, self.second.response_id)


@dataclass(frozen=True)
class ComparisonVote:
    """One person's verdict on a comparison, with the versions of both sides."""

    prompt_id: int
    voter: str
    emoji: str  # the verdict's canonical emoji (see bot.comparison)
    first_version: int
    second_version: int
    created_at: float


@dataclass(frozen=True)
class VoteRow:
    vote_id: int
    response_id: int
    prompt_id: int
    voter: str
    emoji: str
    reward: float
    model_version: int
    created_at: float


@dataclass(frozen=True)
class VersionApproval:
    version: int
    answers: int
    voters: int
    up: int
    down: int

    @property
    def approval(self) -> float | None:
        rated = self.up + self.down
        return self.up / rated if rated else None


@dataclass(frozen=True)
class SignalRow:
    """One implicit signal (storage.repository.signals), with the answer's prompt and version."""

    signal_id: int
    response_id: int
    prompt_id: int
    person: str
    kind: str  # reply_positive, reply_negative, retry, rephrase
    value: float  # > 0 speaks for the answer, < 0 against it
    better_response_id: int | None  # a retry: the new answer to the same question
    model_version: int
    created_at: float


@dataclass(frozen=True)
class AnswerShown:
    """The answer a person saw last: what their next message is read against."""

    response_id: int
    prompt_id: int
    prompt_text: str
    asked_at: float
    model_version: int
    conversation: str | None = None  # the conversation it was asked in (None: none)


@dataclass(frozen=True)
class Turn:
    user_text: str
    bot_text: str


@dataclass(frozen=True)
class ForgetCounts:
    prompts: int
    votes: int
    corrections: int
    signals: int = 0  # implicit signals they gave (replies, retries, rephrasings)
    contexts: int = 0  # other people's prompts whose stored dialogue held their turns
    wiped: bool = True  # the WAL was checkpointed and truncated (see Database.checkpoint)
    # What they wrote, prompts and corrections (as storage.dialogue.clean writes it): for
    # taking the examples built on them out of the files made from the database.
    texts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FeedbackAnswer:
    """One stored answer with the prompt it answered: what the trainer learns from."""

    response_id: int
    prompt_id: int
    candidate: int
    conversation: str | None
    context: str  # the dialogue text the model continued
    prompt_text: str
    author: str  # person key of who asked
    text: str
    model_version: int
    flagged: bool
    prompt_created_at: float


@dataclass(frozen=True)
class CorrectionRow:
    correction_id: int
    response_id: int
    author: str
    text: str
    created_at: float


@dataclass(frozen=True)
class RecentVote:
    """A vote as the dashboard shows it: texts and emoji, never who."""

    created_at: float
    emoji: str
    prompt_text: str
    answer_text: str
    model_version: int


@dataclass(frozen=True)
class TrainingRun:
    run_id: int
    started_at: float
    finished_at: float | None
    status: str  # running, published, rejected, skipped, failed
    parent_version: int | None
    new_version: int | None
    examples: int | None
    reason: str | None
    tracking: str | None = None  # the run's TensorBoard folder or tracker link (THUMBTUNE_REPORT_TO)


class VoteOutcome(enum.Enum):
    RECORDED = "recorded"
    ALREADY_RECORDED = "already recorded"  # same voter, answer and emoji
    DUPLICATE_EVENT = "duplicate event"  # this platform event was handled before
    UNKNOWN_RESPONSE = "unknown response"  # not one of the bot's answers
    UNKNOWN_EMOJI = "unknown emoji"  # not in the emoji table
    CAPPED = "daily vote cap reached"
    FLAGGED = "flagged"  # the answer is marked never to train on
    FORGOTTEN = "answer from before the voter's forget me"  # never stored again (see forget_person)
    RETRACTED = "retracted"
    NOTHING_TO_RETRACT = "nothing to retract"
