"""The operations the bot and the trainer need, named for what they mean."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from storage.database import Database


@dataclass(frozen=True)
class NewResponse:
    text: str
    model_version: int
    temperature: float
    top_p: float
    max_new_tokens: int


@dataclass(frozen=True)
class StoredAnswer:
    prompt_id: int
    response_ids: tuple[int, ...]


@dataclass(frozen=True)
class ResponseRef:
    """What a reaction needs to know about the answer it landed on."""

    response_id: int
    prompt_id: int
    candidate: int
    model_version: int
    flagged: bool


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
class Turn:
    user_text: str
    bot_text: str


class VoteOutcome(enum.Enum):
    RECORDED = "recorded"
    ALREADY_RECORDED = "already recorded"   # same voter, answer and emoji
    DUPLICATE_EVENT = "duplicate event"     # this platform event was handled before
    UNKNOWN_RESPONSE = "unknown response"   # not one of the bot's answers
    UNKNOWN_EMOJI = "unknown emoji"         # not in the emoji table
    RETRACTED = "retracted"
    NOTHING_TO_RETRACT = "nothing to retract"


class Repository:
    def __init__(self, database: Database) -> None:
        self.database = database

    # --- events ---------------------------------------------------------------------
    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Remember a platform event; False when it was already handled (a retry)."""
        async with self.database.transaction() as db:
            return await _claim(db, platform, event_id)

    # --- prompts and answers --------------------------------------------------------
    async def record_answer(
        self,
        *,
        platform: str,
        channel: str,
        author: str,
        text: str,
        context: str,
        responses: Sequence[NewResponse],
        conversation: str | None = None,
    ) -> StoredAnswer:
        """Store a prompt and the candidate answers generated for it, atomically."""
        now = time.time()
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO prompts (platform, channel, author, conversation, text, context, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (platform, channel, author, conversation, text, context, now),
            )
            prompt_id = int(cursor.lastrowid)
            ids = []
            for candidate, response in enumerate(responses):
                cursor = await db.execute(
                    "INSERT INTO responses (prompt_id, candidate, text, model_version, temperature,"
                    " top_p, max_new_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        prompt_id,
                        candidate,
                        response.text,
                        response.model_version,
                        response.temperature,
                        response.top_p,
                        response.max_new_tokens,
                        now,
                    ),
                )
                ids.append(int(cursor.lastrowid))
        return StoredAnswer(prompt_id=prompt_id, response_ids=tuple(ids))

    async def bind_message(self, response_id: int, message_key: str) -> None:
        """Remember where the platform shows an answer, so reactions can find it."""
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE responses SET message_key = ? WHERE id = ?", (message_key, response_id)
            )

    async def response_by_message(self, message_key: str) -> ResponseRef | None:
        async with self.database.reading() as db:
            cursor = await db.execute(_RESPONSE_REF + " WHERE r.message_key = ?", (message_key,))
            row = await cursor.fetchone()
        return _response_ref(row) if row else None

    async def response(self, response_id: int) -> ResponseRef | None:
        async with self.database.reading() as db:
            cursor = await db.execute(_RESPONSE_REF + " WHERE r.id = ?", (response_id,))
            row = await cursor.fetchone()
        return _response_ref(row) if row else None

    async def conversation_of_message(self, message_key: str) -> str | None:
        """The conversation a posted answer belongs to, so a reply to it can continue it."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT p.conversation FROM responses r JOIN prompts p ON p.id = r.prompt_id"
                " WHERE r.message_key = ?",
                (message_key,),
            )
            row = await cursor.fetchone()
        return row[0] if row else None

    async def conversation_history(self, conversation: str, *, limit: int = 8) -> list[Turn]:
        """Earlier turns of a conversation (oldest first), each with the first answer given."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT p.text, r.text FROM prompts p JOIN responses r"
                " ON r.prompt_id = p.id AND r.candidate = 0"
                " WHERE p.conversation = ? ORDER BY p.id DESC LIMIT ?",
                (conversation, limit),
            )
            rows = await cursor.fetchall()
        return [Turn(user_text=row[0], bot_text=row[1]) for row in reversed(rows)]

    # --- feedback -------------------------------------------------------------------
    async def record_vote(
        self,
        *,
        response_id: int,
        voter: str,
        emoji: str,
        reward: float,
        event: tuple[str, str] | None = None,
    ) -> VoteOutcome:
        """One vote per voter + answer + emoji; ``event`` = (platform, event id) for dedup."""
        async with self.database.transaction() as db:
            if event is not None and not await _claim(db, *event):
                return VoteOutcome.DUPLICATE_EVENT
            if not await _exists(db, response_id):
                return VoteOutcome.UNKNOWN_RESPONSE
            cursor = await db.execute(
                "INSERT INTO votes (response_id, voter, emoji, reward, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (response_id, voter, emoji) DO NOTHING",
                (response_id, voter, emoji, reward, time.time()),
            )
            return VoteOutcome.RECORDED if cursor.rowcount == 1 else VoteOutcome.ALREADY_RECORDED

    async def retract_vote(
        self,
        *,
        response_id: int,
        voter: str,
        emoji: str,
        event: tuple[str, str] | None = None,
    ) -> VoteOutcome:
        async with self.database.transaction() as db:
            if event is not None and not await _claim(db, *event):
                return VoteOutcome.DUPLICATE_EVENT
            cursor = await db.execute(
                "DELETE FROM votes WHERE response_id = ? AND voter = ? AND emoji = ?",
                (response_id, voter, emoji),
            )
            return VoteOutcome.RETRACTED if cursor.rowcount else VoteOutcome.NOTHING_TO_RETRACT

    async def record_correction(
        self,
        *,
        response_id: int,
        author: str,
        text: str,
        event: tuple[str, str] | None = None,
    ) -> int | None:
        """Store a person's better answer; None for a duplicate event or an unknown answer."""
        async with self.database.transaction() as db:
            if event is not None and not await _claim(db, *event):
                return None
            if not await _exists(db, response_id):
                return None
            cursor = await db.execute(
                "INSERT INTO corrections (response_id, author, text, created_at) VALUES (?, ?, ?, ?)",
                (response_id, author, text, time.time()),
            )
            return int(cursor.lastrowid)

    async def votes_since(self, version: int) -> list[VoteRow]:
        """Votes cast since ``version`` went live (all votes if it never did)."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT v.id, v.response_id, r.prompt_id, v.voter, v.emoji, v.reward,"
                " r.model_version, v.created_at FROM votes v JOIN responses r ON r.id = v.response_id"
                " WHERE v.created_at >= ? ORDER BY v.id",
                (await _live_at(db, version),),
            )
            rows = await cursor.fetchall()
        return [VoteRow(*row) for row in rows]

    async def count_votes_since(self, version: int) -> int:
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT count(*) FROM votes WHERE created_at >= ?", (await _live_at(db, version),)
            )
            row = await cursor.fetchone()
        return int(row[0])

    async def approval_by_version(self) -> list[VersionApproval]:
        """Per model version: answers given, distinct voters, 👍 and 👎 counts."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT r.model_version, count(DISTINCT r.id), count(DISTINCT v.voter),"
                " coalesce(sum(v.reward > 0), 0), coalesce(sum(v.reward < 0), 0)"
                " FROM responses r LEFT JOIN votes v ON v.response_id = r.id"
                " GROUP BY r.model_version ORDER BY r.model_version"
            )
            rows = await cursor.fetchall()
        return [VersionApproval(*map(int, row)) for row in rows]

    # --- model versions -------------------------------------------------------------
    async def record_model_version(self, version: int, *, source: str, parent: int | None) -> None:
        """Note that ``version`` is now being served (first time only)."""
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO model_versions (version, parent, source, live_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (version) DO NOTHING",
                (version, parent, source, time.time()),
            )


_RESPONSE_REF = (
    "SELECT r.id, r.prompt_id, r.candidate, r.model_version, r.flagged FROM responses r"
)


def _response_ref(row: aiosqlite.Row) -> ResponseRef:
    return ResponseRef(
        response_id=row[0],
        prompt_id=row[1],
        candidate=row[2],
        model_version=row[3],
        flagged=bool(row[4]),
    )


async def _claim(db: aiosqlite.Connection, platform: str, event_id: str) -> bool:
    cursor = await db.execute(
        "INSERT INTO processed_events (platform, event_id, processed_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (platform, event_id, time.time()),
    )
    return cursor.rowcount == 1


async def _exists(db: aiosqlite.Connection, response_id: int) -> bool:
    cursor = await db.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,))
    return await cursor.fetchone() is not None


async def _live_at(db: aiosqlite.Connection, version: int) -> float:
    cursor = await db.execute("SELECT live_at FROM model_versions WHERE version = ?", (version,))
    row = await cursor.fetchone()
    return float(row[0]) if row else 0.0
