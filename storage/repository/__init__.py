"""The operations the bot and the trainer need, named for what they mean."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence

import aiosqlite

from storage.database import Database
from storage.dialogue import clean, render_prompt, without_turns
from storage.repository.rows import (
    ComparisonRef,
    ComparisonVote,
    CorrectionRow,
    FeedbackAnswer,
    ForgetCounts,
    NewResponse,
    PendingPrompt,
    RecentVote,
    ResponseRef,
    StoredAnswer,
    StoredCandidate,
    TrainingRun,
    Turn,
    VersionApproval,
    VoteOutcome,
    VoteRow,
)

__all__ = [
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
    "StoredAnswer",
    "StoredCandidate",
    "TrainingRun",
    "Turn",
    "VersionApproval",
    "VoteOutcome",
    "VoteRow",
]

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")  # storage.redact's placeholders


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
        mode: str = "single",
        pending_id: int | None = None,
    ) -> StoredAnswer:
        """Store a prompt and the candidate answers generated for it, atomically.

        ``mode``: "single" (candidate 0 is shown) or "compare" (candidates 0 and 1 are
        shown side by side and rated with one verdict). ``pending_id``: the pending prompt
        this answers; it remembers the answer, so a restart posts it rather than generating again.
        """
        now = time.time()
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO prompts (platform, channel, author, conversation, text, context, created_at, mode)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (platform, channel, author, conversation, text, context, now, mode),
            )
            prompt_id = _inserted_id(cursor)
            ids = []
            for candidate, response in enumerate(responses):
                cursor = await db.execute(
                    "INSERT INTO responses (prompt_id, candidate, text, model_version, temperature,"
                    " top_p, max_new_tokens, created_at, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        prompt_id,
                        candidate,
                        response.text,
                        response.model_version,
                        response.temperature,
                        response.top_p,
                        response.max_new_tokens,
                        now,
                        response.score,
                    ),
                )
                ids.append(_inserted_id(cursor))
            if pending_id is not None:
                await db.execute("UPDATE pending_prompts SET prompt_id = ? WHERE id = ?", (prompt_id, pending_id))
        return StoredAnswer(prompt_id=prompt_id, response_ids=tuple(ids))

    async def stored_candidates(self, prompt_id: int) -> tuple[str, list[StoredCandidate]] | None:
        """The mode and the candidates (in order) of a stored answer; None when it is gone."""
        async with self.database.reading() as db:
            cursor = await db.execute("SELECT mode FROM prompts WHERE id = ?", (prompt_id,))
            row = await cursor.fetchone()
            if row is None:
                return None
            cursor = await db.execute(
                "SELECT id, text, model_version FROM responses WHERE prompt_id = ? ORDER BY candidate", (prompt_id,)
            )
            candidates = [StoredCandidate(*candidate) for candidate in await cursor.fetchall()]
        return str(row[0]), candidates

    # --- pending prompts ------------------------------------------------------------
    async def take_pending(
        self,
        *,
        platform: str,
        channel: str,
        thread: str | None,
        user: str,
        author: str,
        text: str,
        conversation: str | None,
        event_id: str | None,
    ) -> PendingPrompt | None:
        """Store a prompt as pending and claim its event, atomically; None when the event was handled already."""
        now = time.time()
        async with self.database.transaction() as db:
            if event_id is not None and not await _claim(db, platform, event_id):
                return None
            cursor = await db.execute(
                "INSERT INTO pending_prompts (platform, channel, thread, user_id, author, text, conversation,"
                " event_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (platform, channel, thread, user, author, text, conversation, event_id, now),
            )
            pending_id = _inserted_id(cursor)
        return PendingPrompt(pending_id, platform, channel, thread, user, text, conversation, event_id, now, None)

    async def place_pending(self, pending_id: int, *, thread: str, conversation: str | None) -> None:
        """Note where a pending prompt's answer goes, once the adapter has made that place."""
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE pending_prompts SET thread = ?, conversation = ? WHERE id = ?",
                (thread, conversation, pending_id),
            )

    async def pending_prompts(self, platform: str) -> list[PendingPrompt]:
        """The prompts of ``platform`` still waiting for an answer, oldest first."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT id, platform, channel, thread, user_id, text, conversation, event_id, received_at, prompt_id"
                " FROM pending_prompts WHERE platform = ? ORDER BY id",
                (platform,),
            )
            rows = await cursor.fetchall()
        return [PendingPrompt(*row) for row in rows]

    async def drop_pending(self, pending_id: int) -> None:
        """The prompt was answered (or its answer refused by the platform): it is no longer pending."""
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM pending_prompts WHERE id = ?", (pending_id,))

    async def bind_message(self, response_id: int, message_key: str) -> None:
        """Remember where the platform shows an answer, so reactions can find it."""
        async with self.database.transaction() as db:
            await db.execute("UPDATE responses SET message_key = ? WHERE id = ?", (message_key, response_id))

    async def response_by_message(self, message_key: str) -> ResponseRef | None:
        async with self.database.reading() as db:
            cursor = await db.execute(_RESPONSE_REF + " WHERE r.message_key = ?", (message_key,))
            row = await cursor.fetchone()
        return _response_ref(row) if row else None

    async def comparison_by_message(self, message_key: str) -> ComparisonRef | None:
        """The comparison posted as ``message_key`` (bound to its candidate 0); None otherwise."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                _RESPONSE_REF + " JOIN prompts p ON p.id = r.prompt_id"
                " WHERE p.mode = 'compare' AND r.candidate IN (0, 1) AND r.prompt_id ="
                " (SELECT prompt_id FROM responses WHERE message_key = ? AND candidate = 0)"
                " ORDER BY r.candidate",
                (message_key,),
            )
            rows = list(await cursor.fetchall())
        if len(rows) != 2:
            return None
        first, second = (_response_ref(row) for row in rows)
        return ComparisonRef(prompt_id=first.prompt_id, first=first, second=second)

    async def conversation_of_message(self, message_key: str) -> str | None:
        """The conversation a posted answer belongs to, so a reply to it can continue it."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT p.conversation FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE r.message_key = ?",
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
            rows = list(await cursor.fetchall())
        return [Turn(user_text=row[0], bot_text=row[1]) for row in reversed(rows)]

    async def latest_answer_key(self, conversation: str) -> str | None:
        """Message key of the newest posted answer in a conversation (what a correction there means)."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT r.message_key FROM responses r JOIN prompts p ON p.id = r.prompt_id"
                " WHERE p.conversation = ? AND r.message_key IS NOT NULL ORDER BY r.id DESC LIMIT 1",
                (conversation,),
            )
            row = await cursor.fetchone()
        return str(row[0]) if row else None

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
            if await _forgotten_since(db, voter, response_id):
                return VoteOutcome.FORGOTTEN
            inserted = await _insert_vote(db, response_id, voter, emoji, reward, comparison=False)
            return VoteOutcome.RECORDED if inserted else VoteOutcome.ALREADY_RECORDED

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

    async def record_comparison(
        self,
        *,
        comparison: ComparisonRef,
        voter: str,
        emoji: str,
        rewards: tuple[float, float],
        event: tuple[str, str] | None = None,
    ) -> VoteOutcome:
        """One verdict on a comparison: a vote on each candidate (same voter and emoji), atomically."""
        async with self.database.transaction() as db:
            if event is not None and not await _claim(db, *event):
                return VoteOutcome.DUPLICATE_EVENT
            if await _forgotten_since(db, voter, comparison.first.response_id):
                return VoteOutcome.FORGOTTEN
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
        async with self.database.transaction() as db:
            if event is not None and not await _claim(db, *event):
                return VoteOutcome.DUPLICATE_EVENT
            cursor = await db.execute(
                "DELETE FROM votes WHERE response_id IN (?, ?) AND voter = ? AND emoji = ? AND comparison = 1",
                (*comparison.response_ids, voter, emoji),
            )
            return VoteOutcome.RETRACTED if cursor.rowcount else VoteOutcome.NOTHING_TO_RETRACT

    async def comparison_votes(self) -> list[ComparisonVote]:
        """Every verdict on a comparison (one row each, read from candidate 0's vote), oldest first."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT a.prompt_id, v.voter, v.emoji, a.model_version, b.model_version, v.created_at"
                " FROM votes v JOIN responses a ON a.id = v.response_id AND a.candidate = 0"
                " JOIN responses b ON b.prompt_id = a.prompt_id AND b.candidate = 1"
                " WHERE v.comparison = 1 ORDER BY v.id"
            )
            rows = await cursor.fetchall()
        return [ComparisonVote(*row) for row in rows]

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
            return _inserted_id(cursor)

    async def flag_response(self, response_id: int, *, event: tuple[str, str] | None = None) -> VoteOutcome:
        """Mark an answer as flagged: it is never trained on. Flags are not taken back."""
        async with self.database.transaction() as db:
            if event is not None and not await _claim(db, *event):
                return VoteOutcome.DUPLICATE_EVENT
            cursor = await db.execute("UPDATE responses SET flagged = 1 WHERE id = ?", (response_id,))
            return VoteOutcome.FLAGGED if cursor.rowcount else VoteOutcome.UNKNOWN_RESPONSE

    async def count_votes_by(self, voter: str, *, since: float) -> int:
        async with self.database.reading() as db:
            # A comparison verdict is two rows (one per candidate) but one vote.
            cursor = await db.execute(
                "SELECT coalesce(sum(comparison = 0) + sum(comparison = 1) / 2, 0) FROM votes"
                " WHERE voter = ? AND created_at >= ?",
                (voter, since),
            )
            return await _count(cursor)

    async def votes_since(self, version: int) -> list[VoteRow]:
        """Votes cast since ``version`` went live (all votes if it never did)."""
        async with self.database.reading() as db:
            return await _votes_after(db, await _live_at(db, version))

    async def all_votes(self) -> list[VoteRow]:
        async with self.database.reading() as db:
            return await _votes_after(db, 0.0)

    async def count_votes_since(self, version: int) -> int:
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT coalesce(sum(comparison = 0) + sum(comparison = 1) / 2, 0) FROM votes"
                " WHERE created_at >= ?",  # a comparison verdict (two rows) is one vote
                (await _live_at(db, version),),
            )
            return await _count(cursor)

    async def approval_by_version(self) -> list[VersionApproval]:
        """Per model version: answers given, distinct voters, 👍 and 👎 counts."""
        # Read from the running counters the triggers of migration 0003 keep exact.
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT c.version, c.answers,"
                " (SELECT count(*) FROM version_voters w WHERE w.version = c.version), c.up, c.down"
                " FROM version_counts c WHERE c.answers > 0 OR c.up > 0 OR c.down > 0 ORDER BY c.version"
            )
            rows = await cursor.fetchall()
        return [VersionApproval(*map(int, row)) for row in rows]

    # --- privacy --------------------------------------------------------------------
    async def forget_person(self, person: str) -> ForgetCounts:
        """Delete one person's prompts (with the answers to them), votes and corrections.

        In the same transaction: their tombstone (person key and time; a second forget
        moves it) keeps votes on answers posted before it from ever being stored again
        (:meth:`record_vote`), and other people's prompts in the same conversations have
        the person's turns (their questions and the bot's answers to them) taken out of
        their stored dialogue. Then the WAL is checkpointed and truncated, so with
        ``secure_delete`` on no copy of the deleted text stays in the files.
        """
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO forgotten_people (person, forgotten_at) VALUES (?, ?)"
                " ON CONFLICT (person) DO UPDATE SET forgotten_at = excluded.forgotten_at",
                (person, time.time()),
            )
            texts = await _texts_of(db, person)
            contexts = await _scrub_contexts(db, person)
            votes = (await db.execute("DELETE FROM votes WHERE voter = ?", (person,))).rowcount
            corrections = (await db.execute("DELETE FROM corrections WHERE author = ?", (person,))).rowcount
            # Answers to their prompts go too (ON DELETE CASCADE), with others' votes on them.
            prompts = (await db.execute("DELETE FROM prompts WHERE author = ?", (person,))).rowcount
            # Prompts of theirs not answered yet are dropped, with the platform id kept for them.
            await db.execute("DELETE FROM pending_prompts WHERE author = ?", (person,))
        wiped = await self.database.checkpoint()
        if not wiped:
            log.warning("forget: another process is reading the database; old pages stay in the WAL until it stops")
        return ForgetCounts(
            prompts=prompts, votes=votes, corrections=corrections, contexts=contexts, wiped=wiped, texts=texts
        )

    async def purge_texts_before(self, cutoff: float) -> int:
        """Blank prompt, answer and correction texts older than ``cutoff`` (a Unix time).

        Rows, versions and votes stay, so per-version counts remain; the words are gone.
        Returns the number of prompts purged.
        """
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE prompts SET text = '', context = '' WHERE created_at < ? AND (text != '' OR context != '')",
                (cutoff,),
            )
            await db.execute("UPDATE responses SET text = '' WHERE created_at < ? AND text != ''", (cutoff,))
            await db.execute("UPDATE corrections SET text = '' WHERE created_at < ? AND text != ''", (cutoff,))
        return cursor.rowcount

    async def votes_on(self, response_id: int) -> list[tuple[str, str]]:
        """(voter, emoji) of every vote on one answer."""
        async with self.database.reading() as db:
            cursor = await db.execute("SELECT voter, emoji FROM votes WHERE response_id = ?", (response_id,))
            rows = await cursor.fetchall()
        return [(row[0], row[1]) for row in rows]

    async def posted_answers_since(
        self, platform: str, since: float, *, limit: int | None = None, newest_first: bool = False
    ) -> list[tuple[int, str]]:
        """(response id, message key) of the answers posted on ``platform`` since ``since``.

        Oldest first, or newest first with ``newest_first``; at most ``limit`` of them.
        """
        order = "DESC" if newest_first else "ASC"  # one of two constants, never from input
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT r.id, r.message_key FROM responses r JOIN prompts p ON p.id = r.prompt_id"
                " WHERE p.platform = ? AND r.created_at >= ? AND r.message_key IS NOT NULL"
                f" ORDER BY r.id {order} LIMIT ?",
                (platform, since, -1 if limit is None else limit),
            )
            rows = await cursor.fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    async def prompt_channels(self, platform: str, *, limit: int) -> list[str]:
        """The channels people asked in on ``platform``, the most recently used first, at most ``limit``."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT channel FROM prompts WHERE platform = ? GROUP BY channel ORDER BY max(id) DESC LIMIT ?",
                (platform, limit),
            )
            rows = await cursor.fetchall()
        return [str(row[0]) for row in rows]

    async def votes_per_day(self, *, days: int = 30) -> list[tuple[str, int, int, int]]:
        """(UTC day, votes, up, down) for the last ``days`` days, oldest first."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT day, votes, up, down FROM day_counts"
                " WHERE day >= date(?, 'unixepoch') AND votes > 0 ORDER BY day",
                (time.time() - days * 86_400,),
            )
            rows = await cursor.fetchall()
        return [(row[0], int(row[1]), int(row[2]), int(row[3])) for row in rows]

    async def recent_votes(self, *, limit: int = 20) -> list[RecentVote]:
        """The latest votes on answers whose texts are still kept (retention blanks them,
        `forget me` deletes them), newest first; a comparison verdict once."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT v.created_at, v.emoji, p.text, r.text, r.model_version FROM votes v"
                " JOIN responses r ON r.id = v.response_id JOIN prompts p ON p.id = r.prompt_id"
                " WHERE r.text != '' AND p.text != '' AND (v.comparison = 0 OR r.candidate = 0)"
                " ORDER BY v.id DESC LIMIT ?",
                (limit,),
            )
            rows = await cursor.fetchall()
        return [RecentVote(float(row[0]), row[1], row[2], row[3], int(row[4])) for row in rows]

    async def kept_prompts(self, texts: Iterable[str], *, redact: Callable[[str], str] | None = None) -> set[str]:
        """Those of ``texts`` that some stored prompt still says (not blanked, not forgotten).

        With ``redact`` (storage.redact), a text holding placeholders (``<EMAIL>``: a quote
        from a scrubbed file) is kept while a stored prompt scrubs to exactly it."""
        wanted = sorted({text for text in texts if text})
        kept: set[str] = set()
        async with self.database.reading() as db:
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                cursor = await db.execute(
                    f"SELECT DISTINCT text FROM prompts WHERE text IN ({', '.join('?' * len(chunk))})", chunk
                )
                kept.update(str(row[0]) for row in await cursor.fetchall())
            for text in wanted:
                if text in kept or redact is None or not _PLACEHOLDER.search(text):
                    continue
                like = "%".join(_like_escaped(part) for part in _PLACEHOLDER.split(text))
                cursor = await db.execute(
                    "SELECT DISTINCT text FROM prompts WHERE text LIKE ? ESCAPE '\\' LIMIT 100", (like,)
                )
                if any(redact(str(row[0])) == text for row in await cursor.fetchall()):
                    kept.add(text)
        return kept

    # --- model versions -------------------------------------------------------------
    async def model_versions_live_at(self) -> dict[int, float]:
        async with self.database.reading() as db:
            cursor = await db.execute("SELECT version, live_at FROM model_versions")
            rows = await cursor.fetchall()
        return {int(row[0]): float(row[1]) for row in rows}

    async def record_model_version(self, version: int, *, source: str, parent: int | None) -> None:
        """Note that ``version`` is now being served (first time only)."""
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO model_versions (version, parent, source, live_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (version) DO NOTHING",
                (version, parent, source, time.time()),
            )

    # --- training -------------------------------------------------------------------
    async def feedback_answers(self) -> list[FeedbackAnswer]:
        """Answers that have votes or corrections, plus every answer in a conversation
        that has any (later turns credit earlier ones); oldest first."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "WITH rated AS (SELECT response_id FROM votes UNION SELECT response_id FROM corrections),"
                " rated_conversations AS (SELECT DISTINCT p.conversation FROM rated"
                " JOIN responses r ON r.id = rated.response_id JOIN prompts p ON p.id = r.prompt_id"
                " WHERE p.conversation IS NOT NULL)"
                " SELECT r.id, p.id, r.candidate, p.conversation, p.context, p.text, p.author, r.text,"
                " r.model_version, r.flagged, p.created_at FROM responses r JOIN prompts p ON p.id = r.prompt_id"
                " WHERE r.id IN (SELECT response_id FROM rated)"
                " OR p.conversation IN (SELECT conversation FROM rated_conversations)"
                " ORDER BY p.created_at, p.id, r.candidate"
            )
            rows = await cursor.fetchall()
        return [
            FeedbackAnswer(
                response_id=row[0],
                prompt_id=row[1],
                candidate=row[2],
                conversation=row[3],
                context=row[4],
                prompt_text=row[5],
                author=row[6],
                text=row[7],
                model_version=row[8],
                flagged=bool(row[9]),
                prompt_created_at=row[10],
            )
            for row in rows
        ]

    async def corrections(self, *, since_version: int | None = None) -> list[CorrectionRow]:
        """People's better answers: all, or those written since ``since_version`` went live."""
        async with self.database.reading() as db:
            since = 0.0 if since_version is None else await _live_at(db, since_version)
            cursor = await db.execute(
                "SELECT id, response_id, author, text, created_at FROM corrections WHERE created_at >= ? ORDER BY id",
                (since,),
            )
            rows = await cursor.fetchall()
        return [CorrectionRow(*row) for row in rows]

    async def start_training_run(self, *, parent_version: int) -> int:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO training_runs (started_at, status, parent_version) VALUES (?, 'running', ?)",
                (time.time(), parent_version),
            )
            return _inserted_id(cursor)

    async def finish_training_run(
        self,
        run_id: int,
        *,
        status: str,
        reason: str | None = None,
        new_version: int | None = None,
        examples: int | None = None,
        desirable: int | None = None,
        undesirable: int | None = None,
        held_out: int | None = None,
        tracking: str | None = None,
    ) -> None:
        """Close a run as published, rejected, skipped or failed (with the reason)."""
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE training_runs SET finished_at = ?, status = ?, reason = ?, new_version = ?,"
                " examples = ?, desirable = ?, undesirable = ?, held_out = ?, tracking = ? WHERE id = ?",
                (
                    time.time(),
                    status,
                    reason,
                    new_version,
                    examples,
                    desirable,
                    undesirable,
                    held_out,
                    tracking,
                    run_id,
                ),
            )

    async def running_training_runs(self) -> list[int]:
        """Ids of the runs still marked 'running', oldest first."""
        async with self.database.reading() as db:
            cursor = await db.execute("SELECT id FROM training_runs WHERE status = 'running' ORDER BY id")
            return [int(row[0]) for row in await cursor.fetchall()]

    async def training_runs(self, *, limit: int = 20) -> list[TrainingRun]:
        """The latest runs, newest first."""
        async with self.database.reading() as db:
            cursor = await db.execute(
                "SELECT id, started_at, finished_at, status, parent_version, new_version, examples, reason, tracking"
                " FROM training_runs ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            rows = await cursor.fetchall()
        return [TrainingRun(*row) for row in rows]


_RESPONSE_REF = "SELECT r.id, r.prompt_id, r.candidate, r.model_version, r.flagged FROM responses r"


def _response_ref(row: aiosqlite.Row) -> ResponseRef:
    return ResponseRef(
        response_id=row[0],
        prompt_id=row[1],
        candidate=row[2],
        model_version=row[3],
        flagged=bool(row[4]),
    )


def _inserted_id(cursor: aiosqlite.Cursor) -> int:
    """The rowid of the row an INSERT just wrote (SQLite always sets it then)."""
    assert cursor.lastrowid is not None, "lastrowid is read only after an INSERT"
    return cursor.lastrowid


async def _count(cursor: aiosqlite.Cursor) -> int:
    row = await cursor.fetchone()
    assert row is not None, "an aggregate query returns one row"
    return int(row[0])


async def _claim(db: aiosqlite.Connection, platform: str, event_id: str) -> bool:
    cursor = await db.execute(
        "INSERT INTO processed_events (platform, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (platform, event_id, time.time()),
    )
    return cursor.rowcount == 1


async def _insert_vote(
    db: aiosqlite.Connection, response_id: int, voter: str, emoji: str, reward: float, *, comparison: bool
) -> int:
    """Insert one vote row (tagged with the answer's model version); 0 when it already exists."""
    cursor = await db.execute(
        "INSERT INTO votes (response_id, voter, emoji, reward, created_at, model_version, comparison)"
        " SELECT ?, ?, ?, ?, ?, model_version, ? FROM responses WHERE id = ?"
        " ON CONFLICT (response_id, voter, emoji) DO NOTHING",
        (response_id, voter, emoji, reward, time.time(), int(comparison), response_id),
    )
    return cursor.rowcount


async def _forgotten_since(db: aiosqlite.Connection, voter: str, response_id: int) -> bool:
    """Whether ``voter`` was forgotten after the answer was posted: a reaction the platform
    still shows on it may be from before the forget (platforms do not say when it was given)."""
    cursor = await db.execute(
        "SELECT 1 FROM forgotten_people f JOIN responses r ON r.id = ?"
        " WHERE f.person = ? AND f.forgotten_at >= r.created_at",
        (response_id, voter),
    )
    return await cursor.fetchone() is not None


def _like_escaped(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _texts_of(db: aiosqlite.Connection, person: str) -> frozenset[str]:
    """Their prompts, every answer to them and their corrections, as turns are written."""
    cursor = await db.execute(
        "SELECT text FROM prompts WHERE author = ?"
        " UNION SELECT r.text FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE p.author = ?"
        " UNION SELECT text FROM corrections WHERE author = ?",
        (person, person, person),
    )
    return frozenset(cleaned for (text,) in await cursor.fetchall() if (cleaned := clean(text)))


async def _scrub_contexts(db: aiosqlite.Connection, person: str) -> int:
    """Take ``person``'s turns out of the stored dialogue of other people's later prompts in
    the conversations they took part in; how many prompts changed.

    A turn is recognised by its texts (question and first answer, as the dialogue shows
    them). Where the person's texts were already blanked by retention they cannot be
    recognised: those later prompts keep only their own question.
    """
    cursor = await db.execute(
        "SELECT p.id, p.conversation, p.text, coalesce(r.text, '') FROM prompts p"
        " LEFT JOIN responses r ON r.prompt_id = p.id AND r.candidate = 0"
        " WHERE p.author = ? AND p.conversation IS NOT NULL",
        (person,),
    )
    theirs: dict[str, tuple[int, set[tuple[str, str]], bool]] = {}
    for prompt_id, conversation, text, answer in await cursor.fetchall():
        first, turns, blind = theirs.get(conversation, (prompt_id, set(), False))
        turns.add((clean(text), clean(answer)))
        theirs[conversation] = (min(first, prompt_id), turns, blind or not text)
    changed = 0
    for conversation, (first, turns, blind) in theirs.items():
        cursor = await db.execute(
            "SELECT id, text, context FROM prompts WHERE conversation = ? AND id > ? AND author != ? AND context != ''",
            (conversation, first, person),
        )
        for prompt_id, text, context in await cursor.fetchall():
            scrubbed = render_prompt(text) if blind else without_turns(context, turns, question=text)
            if scrubbed != context:
                await db.execute("UPDATE prompts SET context = ? WHERE id = ?", (scrubbed, prompt_id))
                changed += 1
    return changed


async def _exists(db: aiosqlite.Connection, response_id: int) -> bool:
    cursor = await db.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,))
    return await cursor.fetchone() is not None


async def _live_at(db: aiosqlite.Connection, version: int) -> float:
    cursor = await db.execute("SELECT live_at FROM model_versions WHERE version = ?", (version,))
    row = await cursor.fetchone()
    return float(row[0]) if row else 0.0


async def _votes_after(db: aiosqlite.Connection, since: float) -> list[VoteRow]:
    cursor = await db.execute(
        "SELECT v.id, v.response_id, r.prompt_id, v.voter, v.emoji, v.reward,"
        " r.model_version, v.created_at FROM votes v JOIN responses r ON r.id = v.response_id"
        " WHERE v.created_at >= ? ORDER BY v.id",
        (since,),
    )
    return [VoteRow(*row) for row in await cursor.fetchall()]
