"""The operations the bot and the trainer need, named for what they mean.

One :class:`Repository` over the database, composed of one class per topic, each in its
own module: ``prompts`` (answers and where they are shown), ``pending`` (prompts not
answered yet), ``votes`` (votes, comparison verdicts, corrections, flags), ``signals``
(implicit feedback: replies, retries, rephrasings), ``privacy``
(forget, retention, kept texts), ``runs`` (model versions, training runs), ``reports``
(statistics and the dashboard), ``events`` (platform events handled once). ``rows``
holds the values they hand out and take in; ``base`` the read step and lookups they share.

The topics are mixins of one class rather than objects the repository hands out: every
caller keeps writing ``repository.record_vote(...)``, with no method written twice to
delegate, and all topics share the one database (and its write lock) built here.
"""

from __future__ import annotations

from storage.database import Database
from storage.repository.events import EventQueries
from storage.repository.pending import PendingQueries
from storage.repository.privacy import PrivacyQueries
from storage.repository.prompts import PromptQueries
from storage.repository.reports import ReportQueries
from storage.repository.rows import (
    AnswerShown,
    ComparisonRef,
    ComparisonVote,
    CorrectionRow,
    FeedbackAnswer,
    ForgetCounts,
    NewResponse,
    PendingPrompt,
    RecentVote,
    ResponseRef,
    SignalRow,
    StoredAnswer,
    StoredCandidate,
    TrainingRun,
    Turn,
    VersionApproval,
    VoteOutcome,
    VoteRow,
)
from storage.repository.runs import RunQueries
from storage.repository.signals import REPLY_KINDS, SIGNAL_KINDS, SignalQueries
from storage.repository.votes import VoteQueries

__all__ = [
    "REPLY_KINDS",
    "SIGNAL_KINDS",
    "AnswerShown",
    "ComparisonRef",
    "ComparisonVote",
    "CorrectionRow",
    "FeedbackAnswer",
    "ForgetCounts",
    "NewResponse",
    "PendingPrompt",
    "RecentVote",
    "Repository",
    "ResponseRef",
    "SignalRow",
    "StoredAnswer",
    "StoredCandidate",
    "TrainingRun",
    "Turn",
    "VersionApproval",
    "VoteOutcome",
    "VoteRow",
]


class Repository(
    EventQueries,
    PromptQueries,
    PendingQueries,
    VoteQueries,
    SignalQueries,
    PrivacyQueries,
    RunQueries,
    ReportQueries,
):
    def __init__(self, database: Database) -> None:
        self.database = database
