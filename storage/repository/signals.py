"""Implicit feedback: what the person who asked does anyway right after an answer (a reply
read as thanks or a complaint, the same question again, the question in other words).

Its own rows beside votes, never a vote: approval counters and vote caps see none of it,
and the trainer weighs each kind by how well it agreed with people's own votes."""

from __future__ import annotations

import time

from storage.database import Connection
from storage.repository.base import Queries, live_at, response_exists
from storage.repository.events import new_event
from storage.repository.rows import AnswerShown, SignalRow, VoteOutcome

SIGNAL_KINDS: tuple[str, ...] = ("reply_positive", "reply_negative", "retry", "rephrase")
REPLY_KINDS: frozenset[str] = frozenset({"reply_positive", "reply_negative"})


class SignalQueries(Queries):
    async def record_signal(
        self,
        *,
        response_id: int,
        person: str,
        kind: str,
        value: float,
        text: str = "",
        better_response_id: int | None = None,
        event: tuple[str, str] | None = None,
    ) -> VoteOutcome:
        """Store one implicit signal about an answer; ``event`` = (platform, event id) for dedup.

        One of each kind per person and answer, and one reply (thanks or complaint) in all:
        a second reply to the same answer is a conversation going on, not a second verdict.
        A person forgotten after the answer was given is not read again (as for votes)."""
        if kind not in SIGNAL_KINDS:
            raise ValueError(f"unknown signal kind {kind!r}")
        async with self.database.transaction() as db:
            if not await new_event(db, event):
                return VoteOutcome.DUPLICATE_EVENT
            if not await response_exists(db, response_id):
                return VoteOutcome.UNKNOWN_RESPONSE
            await self.database.hold(db, f"person:{person}")
            if await _forgotten_after(db, person, response_id):
                return VoteOutcome.FORGOTTEN
            if kind in REPLY_KINDS and await _replied(db, person, response_id):
                return VoteOutcome.ALREADY_RECORDED
            cursor = await db.execute(
                "INSERT INTO implicit_signals (response_id, person, kind, value, text, better_response_id,"
                " model_version, created_at) SELECT ?, ?, ?, ?, ?, ?, model_version, ? FROM responses WHERE id = ?"
                " ON CONFLICT (response_id, person, kind) DO NOTHING",
                (response_id, person, kind, value, text, better_response_id, time.time(), response_id),
            )
            return VoteOutcome.RECORDED if cursor.rowcount else VoteOutcome.ALREADY_RECORDED

    async def signals_since(self, version: int) -> list[SignalRow]:
        """Signals given since ``version`` went live (all of them if it never did), oldest first."""
        async with self.database.reading() as db:
            return await _signals_after(db, await live_at(db, version))

    async def all_signals(self) -> list[SignalRow]:
        async with self.database.reading() as db:
            return await _signals_after(db, 0.0)

    async def signals_on(self, response_id: int) -> list[SignalRow]:
        return await self._rows(SignalRow, _SIGNALS + " WHERE s.response_id = ? ORDER BY s.id", (response_id,))

    async def answer_shown_before(
        self, *, author: str, conversation: str | None, platform: str, channel: str, since: float
    ) -> AnswerShown | None:
        """The newest answer shown to ``author``: in ``conversation``, or else in the same
        channel of ``platform`` since ``since`` (the next message there is theirs to it).

        The shown answer is candidate 0 of a single answer (a comparison is rated by verdict)."""
        shown = (
            "SELECT r.id, p.id, p.text, p.created_at, r.model_version, p.conversation FROM responses r"
            " JOIN prompts p ON p.id = r.prompt_id"
            " WHERE r.candidate = 0 AND p.mode = 'single' AND p.author = ?"
        )
        if conversation is not None:
            found = await self._row(
                AnswerShown, shown + " AND p.conversation = ? ORDER BY p.id DESC LIMIT 1", (author, conversation)
            )
            if found is not None:
                return found
        return await self._row(
            AnswerShown,
            shown + " AND p.platform = ? AND p.channel = ? AND p.created_at >= ? ORDER BY p.id DESC LIMIT 1",
            (author, platform, channel, since),
        )


_SIGNALS = (
    "SELECT s.id, s.response_id, r.prompt_id, s.person, s.kind, s.value, s.better_response_id,"
    " s.model_version, s.created_at FROM implicit_signals s JOIN responses r ON r.id = s.response_id"
)


async def _signals_after(db: Connection, since: float) -> list[SignalRow]:
    cursor = await db.execute(_SIGNALS + " WHERE s.created_at >= ? ORDER BY s.id", (since,))
    return [SignalRow(*row) for row in await cursor.fetchall()]


async def _replied(db: Connection, person: str, response_id: int) -> bool:
    cursor = await db.execute(
        "SELECT 1 FROM implicit_signals WHERE response_id = ? AND person = ?"
        " AND kind IN ('reply_positive', 'reply_negative')",
        (response_id, person),
    )
    return await cursor.fetchone() is not None


async def _forgotten_after(db: Connection, person: str, response_id: int) -> bool:
    cursor = await db.execute(
        "SELECT 1 FROM forgotten_people f JOIN responses r ON r.id = ?"
        " WHERE f.person = ? AND f.forgotten_at >= r.created_at",
        (response_id, person),
    )
    return await cursor.fetchone() is not None
