"""What people say about an answer: votes (emoji reactions), comparison verdicts,
corrections (better answers) and flags; each write claims its platform event first."""

from __future__ import annotations

import time

from storage.database import Connection
from storage.repository.base import Queries, count_of, inserted_id, live_at, response_exists
from storage.repository.events import new_event
from storage.repository.rows import ComparisonRef, ComparisonVote, CorrectionRow, VoteOutcome, VoteRow

# How many votes a set of rows is: a comparison verdict is two rows (one per candidate) but one vote.
_VOTE_COUNT = (
    "SELECT coalesce(sum(CASE WHEN comparison = 0 THEN 1 ELSE 0 END)"
    " + sum(CASE WHEN comparison = 1 THEN 1 ELSE 0 END) / 2, 0) FROM votes"
)


class VoteQueries(Queries):
    async def record_vote(
        self,
        *,
        response_id: int,
        voter: str,
        emoji: str,
        reward: float,
        event: tuple[str, str] | None = None,
        daily_cap: int = 0,
    ) -> VoteOutcome:
        """One vote per voter + answer + emoji; ``event`` = (platform, event id) for dedup.

        ``daily_cap``: refused (CAPPED) when the voter cast that many votes in the last 24
        hours; checked in the same transaction, with the voter's lock held, so the cap holds
        across bot processes sharing the database (0 = no cap)."""
        async with self.database.transaction() as db:
            if not await new_event(db, event):
                return VoteOutcome.DUPLICATE_EVENT
            if not await response_exists(db, response_id):
                return VoteOutcome.UNKNOWN_RESPONSE
            if refused := await self._refused(db, voter, response_id, daily_cap):
                return refused
            inserted = await _insert_vote(db, response_id, voter, emoji, reward, comparison=False)
            return VoteOutcome.RECORDED if inserted else VoteOutcome.ALREADY_RECORDED

    async def _refused(self, db: Connection, voter: str, response_id: int, daily_cap: int) -> VoteOutcome | None:
        """Why ``voter``'s vote on ``response_id`` may not be stored (forgotten, capped); None
        when it may. Holds the voter's lock for the rest of the transaction: another
        process's vote or forget of the same person waits (a no-op on SQLite, whose writers
        take turns anyway)."""
        await self.database.hold(db, f"person:{voter}")
        if await _forgotten_since(db, voter, response_id):
            return VoteOutcome.FORGOTTEN
        if daily_cap:
            since = time.time() - 86_400
            cursor = await db.execute(_VOTE_COUNT + " WHERE voter = ? AND created_at >= ?", (voter, since))
            if await count_of(cursor) >= daily_cap:
                return VoteOutcome.CAPPED
        return None

    async def retract_vote(
        self,
        *,
        response_id: int,
        voter: str,
        emoji: str,
        event: tuple[str, str] | None = None,
    ) -> VoteOutcome:
        return await self._retract_once(
            event,
            "DELETE FROM votes WHERE response_id = ? AND voter = ? AND emoji = ?",
            (response_id, voter, emoji),
        )

    async def record_comparison(
        self,
        *,
        comparison: ComparisonRef,
        voter: str,
        emoji: str,
        rewards: tuple[float, float],
        event: tuple[str, str] | None = None,
        daily_cap: int = 0,
    ) -> VoteOutcome:
        """One verdict on a comparison: a vote on each candidate (same voter and emoji),
        atomically; ``daily_cap`` as for :meth:`record_vote`."""
        async with self.database.transaction() as db:
            if not await new_event(db, event):
                return VoteOutcome.DUPLICATE_EVENT
            if refused := await self._refused(db, voter, comparison.first.response_id, daily_cap):
                return refused
            recorded = 0
            for response_id, reward in zip(comparison.response_ids, rewards, strict=True):
                recorded += await _insert_vote(db, response_id, voter, emoji, reward, comparison=True)
            if recorded == 0:
                return VoteOutcome.ALREADY_RECORDED
            return VoteOutcome.RECORDED

    async def retract_comparison(
        self,
        *,
        comparison: ComparisonRef,
        voter: str,
        emoji: str,
        event: tuple[str, str] | None = None,
    ) -> VoteOutcome:
        """Take a verdict back: both of its vote rows go."""
        return await self._retract_once(
            event,
            "DELETE FROM votes WHERE response_id IN (?, ?) AND voter = ? AND emoji = ? AND comparison = 1",
            (*comparison.response_ids, voter, emoji),
        )

    async def comparison_votes(self) -> list[ComparisonVote]:
        """Every verdict on a comparison (one row each, read from candidate 0's vote), oldest first."""
        return await self._rows(
            ComparisonVote,
            "SELECT a.prompt_id, v.voter, v.emoji, a.model_version, b.model_version, v.created_at"
            " FROM votes v JOIN responses a ON a.id = v.response_id AND a.candidate = 0"
            " JOIN responses b ON b.prompt_id = a.prompt_id AND b.candidate = 1"
            " WHERE v.comparison = 1 ORDER BY v.id",
        )

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
            if not await new_event(db, event):
                return None
            if not await response_exists(db, response_id):
                return None
            cursor = await db.execute(
                "INSERT INTO corrections (response_id, author, text, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                (response_id, author, text, time.time()),
            )
            return await inserted_id(cursor)

    async def flag_response(self, response_id: int, *, event: tuple[str, str] | None = None) -> VoteOutcome:
        """Mark an answer as flagged: it is never trained on. Flags are not taken back."""
        return await self._change_once(
            event,
            "UPDATE responses SET flagged = 1 WHERE id = ?",
            (response_id,),
            changed=VoteOutcome.FLAGGED,
            unchanged=VoteOutcome.UNKNOWN_RESPONSE,
        )

    async def _change_once(
        self,
        event: tuple[str, str] | None,
        sql: str,
        parameters: tuple[object, ...],
        *,
        changed: VoteOutcome,
        unchanged: VoteOutcome,
    ) -> VoteOutcome:
        """Run one statement for ``event``, once: ``changed`` when it touched a row, else ``unchanged``."""
        async with self.database.transaction() as db:
            if not await new_event(db, event):
                return VoteOutcome.DUPLICATE_EVENT
            cursor = await db.execute(sql, parameters)
            return changed if cursor.rowcount else unchanged

    async def _retract_once(
        self, event: tuple[str, str] | None, sql: str, parameters: tuple[object, ...]
    ) -> VoteOutcome:
        """Delete vote rows for ``event``, once."""
        return await self._change_once(
            event, sql, parameters, changed=VoteOutcome.RETRACTED, unchanged=VoteOutcome.NOTHING_TO_RETRACT
        )

    async def count_votes_by(self, voter: str, *, since: float) -> int:
        async with self.database.reading() as db:
            cursor = await db.execute(_VOTE_COUNT + " WHERE voter = ? AND created_at >= ?", (voter, since))
            return await count_of(cursor)

    async def votes_since(self, version: int) -> list[VoteRow]:
        """Votes cast since ``version`` went live (all votes if it never did)."""
        async with self.database.reading() as db:
            return await _votes_after(db, await live_at(db, version))

    async def all_votes(self) -> list[VoteRow]:
        async with self.database.reading() as db:
            return await _votes_after(db, 0.0)

    async def votes_on_signalled_answers(self) -> list[VoteRow]:
        """The votes on answers that also have an implicit signal: all that an implicit kind's
        agreement with the votes reads (trainer.dataset.signal_weights), not every vote."""
        async with self.database.reading() as db:
            return await _votes_where(db, "v.response_id IN (SELECT response_id FROM implicit_signals)", ())

    async def count_votes_since(self, version: int) -> int:
        async with self.database.reading() as db:
            cursor = await db.execute(_VOTE_COUNT + " WHERE created_at >= ?", (await live_at(db, version),))
            return await count_of(cursor)

    async def votes_on(self, response_id: int) -> list[tuple[str, str]]:
        """(voter, emoji) of every vote on one answer."""
        return await self._rows(
            lambda voter, emoji: (voter, emoji), "SELECT voter, emoji FROM votes WHERE response_id = ?", (response_id,)
        )

    async def corrections(self, *, since_version: int | None = None) -> list[CorrectionRow]:
        """People's better answers: all, or those written since ``since_version`` went live."""
        async with self.database.reading() as db:
            since = 0.0 if since_version is None else await live_at(db, since_version)
            cursor = await db.execute(
                "SELECT id, response_id, author, text, created_at FROM corrections WHERE created_at >= ? ORDER BY id",
                (since,),
            )
            rows = await cursor.fetchall()
        return [CorrectionRow(*row) for row in rows]


async def _insert_vote(
    db: Connection, response_id: int, voter: str, emoji: str, reward: float, *, comparison: bool
) -> int:
    """Insert one vote row (tagged with the answer's model version); 0 when it already exists."""
    cursor = await db.execute(
        "INSERT INTO votes (response_id, voter, emoji, reward, created_at, model_version, comparison)"
        " SELECT ?, ?, ?, ?, ?, model_version, ? FROM responses WHERE id = ?"
        " ON CONFLICT (response_id, voter, emoji) DO NOTHING",
        (response_id, voter, emoji, reward, time.time(), int(comparison), response_id),
    )
    return cursor.rowcount


async def _forgotten_since(db: Connection, voter: str, response_id: int) -> bool:
    """Whether ``voter`` was forgotten after the answer was posted: a reaction the platform
    still shows on it may be from before the forget (platforms do not say when it was given)."""
    cursor = await db.execute(
        "SELECT 1 FROM forgotten_people f JOIN responses r ON r.id = ?"
        " WHERE f.person = ? AND f.forgotten_at >= r.created_at",
        (response_id, voter),
    )
    return await cursor.fetchone() is not None


async def _votes_after(db: Connection, since: float) -> list[VoteRow]:
    return await _votes_where(db, "v.created_at >= ?", (since,))


async def _votes_where(db: Connection, condition: str, parameters: tuple[object, ...]) -> list[VoteRow]:
    cursor = await db.execute(
        "SELECT v.id, v.response_id, r.prompt_id, v.voter, v.emoji, v.reward,"
        " r.model_version, v.created_at FROM votes v JOIN responses r ON r.id = v.response_id"
        f" WHERE {condition} ORDER BY v.id",
        parameters,
    )
    return [VoteRow(*row) for row in await cursor.fetchall()]
