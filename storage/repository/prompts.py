"""Prompts and the answers given to them: storing an answer, finding it again from the
platform message that shows it, the conversation it belongs to, and the answers the trainer
learns from."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from storage.repository.base import Queries, inserted_id
from storage.repository.rows import (
    ComparisonRef,
    FeedbackAnswer,
    NewResponse,
    ResponseRef,
    StoredAnswer,
    StoredCandidate,
    Turn,
)


class PromptQueries(Queries):
    async def record_answer(  # noqa: PLR0913  one keyword per stored field of the prompt and its answers
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
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (platform, channel, author, conversation, text, context, now, mode),
            )
            prompt_id = await inserted_id(cursor)
            ids = []
            for candidate, response in enumerate(responses):
                cursor = await db.execute(
                    "INSERT INTO responses (prompt_id, candidate, text, model_version, temperature,"
                    " top_p, max_new_tokens, created_at, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
                ids.append(await inserted_id(cursor))
            if pending_id is not None:
                await db.execute("UPDATE pending_prompts SET prompt_id = ? WHERE id = ?", (prompt_id, pending_id))
        return StoredAnswer(prompt_id=prompt_id, response_ids=tuple(ids))

    async def stored_candidates(self, prompt_id: int) -> tuple[str, list[StoredCandidate]] | None:
        """The mode and the candidates (in order) of a stored answer; None when it is gone."""
        async with self.database.reading() as db:  # both reads in one turn of the lock: one answer's state
            cursor = await db.execute("SELECT mode FROM prompts WHERE id = ?", (prompt_id,))
            row = await cursor.fetchone()
            if row is None:
                return None
            cursor = await db.execute(
                "SELECT id, text, model_version FROM responses WHERE prompt_id = ? ORDER BY candidate", (prompt_id,)
            )
            candidates = [StoredCandidate(*candidate) for candidate in await cursor.fetchall()]
        return str(row[0]), candidates

    async def bind_message(self, response_id: int, message_key: str) -> None:
        """Remember where the platform shows an answer, so reactions can find it."""
        async with self.database.transaction() as db:
            await db.execute("UPDATE responses SET message_key = ? WHERE id = ?", (message_key, response_id))

    async def response_by_message(self, message_key: str) -> ResponseRef | None:
        return await self._row(_response_ref, _RESPONSE_REF + " WHERE r.message_key = ?", (message_key,))

    async def comparison_by_message(self, message_key: str) -> ComparisonRef | None:
        """The comparison posted as ``message_key`` (bound to its candidate 0); None otherwise."""
        rows = await self._rows(
            _response_ref,
            _RESPONSE_REF + " JOIN prompts p ON p.id = r.prompt_id"
            " WHERE p.mode = 'compare' AND r.candidate IN (0, 1) AND r.prompt_id ="
            " (SELECT prompt_id FROM responses WHERE message_key = ? AND candidate = 0)"
            " ORDER BY r.candidate",
            (message_key,),
        )
        if len(rows) != 2:
            return None
        first, second = rows
        return ComparisonRef(prompt_id=first.prompt_id, first=first, second=second)

    async def conversation_of_message(self, message_key: str) -> str | None:
        """The conversation a posted answer belongs to, so a reply to it can continue it."""
        return await self._row(
            _conversation,
            "SELECT p.conversation FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE r.message_key = ?",
            (message_key,),
        )

    async def conversation_history(self, conversation: str, *, limit: int = 8) -> list[Turn]:
        """Earlier turns of a conversation (oldest first), each with the first answer given."""
        newest_first = await self._rows(
            Turn,
            "SELECT p.text, r.text FROM prompts p JOIN responses r"
            " ON r.prompt_id = p.id AND r.candidate = 0"
            " WHERE p.conversation = ? ORDER BY p.id DESC LIMIT ?",
            (conversation, limit),
        )
        return newest_first[::-1]

    async def latest_answer_key(self, conversation: str) -> str | None:
        """Message key of the newest posted answer in a conversation (what a correction there means)."""
        return await self._row(
            str,
            "SELECT r.message_key FROM responses r JOIN prompts p ON p.id = r.prompt_id"
            " WHERE p.conversation = ? AND r.message_key IS NOT NULL ORDER BY r.id DESC LIMIT 1",
            (conversation,),
        )

    async def posted_answers_since(
        self, platform: str, since: float, *, limit: int | None = None, newest_first: bool = False
    ) -> list[tuple[int, str]]:
        """(response id, message key) of the answers posted on ``platform`` since ``since``.

        Oldest first, or newest first with ``newest_first``; at most ``limit`` of them.
        """
        order = "DESC" if newest_first else "ASC"  # one of two constants, never from input
        bounded = "" if limit is None else " LIMIT ?"
        return await self._rows(
            lambda response_id, message_key: (int(response_id), str(message_key)),
            "SELECT r.id, r.message_key FROM responses r JOIN prompts p ON p.id = r.prompt_id"
            " WHERE p.platform = ? AND r.created_at >= ? AND r.message_key IS NOT NULL"
            f" ORDER BY r.id {order}{bounded}",
            (platform, since) if limit is None else (platform, since, limit),
        )

    async def prompt_channels(self, platform: str, *, limit: int) -> list[str]:
        """The channels people asked in on ``platform``, the most recently used first, at most ``limit``."""
        return await self._rows(
            str,
            "SELECT channel FROM prompts WHERE platform = ? GROUP BY channel ORDER BY max(id) DESC LIMIT ?",
            (platform, limit),
        )

    async def feedback_answers(self) -> list[FeedbackAnswer]:
        """Answers that have votes, corrections or implicit signals (a retry's new answer too),
        plus every answer in a conversation that has any (later turns credit earlier ones); oldest first."""
        return await self._rows(
            _feedback_answer,
            "WITH rated AS (SELECT response_id FROM votes UNION SELECT response_id FROM corrections"
            " UNION SELECT response_id FROM implicit_signals"
            " UNION SELECT better_response_id FROM implicit_signals WHERE better_response_id IS NOT NULL),"
            " rated_conversations AS (SELECT DISTINCT p.conversation FROM rated"
            " JOIN responses r ON r.id = rated.response_id JOIN prompts p ON p.id = r.prompt_id"
            " WHERE p.conversation IS NOT NULL)"
            " SELECT r.id, p.id, r.candidate, p.conversation, p.context, p.text, p.author, r.text,"
            " r.model_version, r.flagged, p.created_at FROM responses r JOIN prompts p ON p.id = r.prompt_id"
            " WHERE r.id IN (SELECT response_id FROM rated)"
            " OR p.conversation IN (SELECT conversation FROM rated_conversations)"
            " ORDER BY p.created_at, p.id, r.candidate",
        )


_RESPONSE_REF = "SELECT r.id, r.prompt_id, r.candidate, r.model_version, r.flagged FROM responses r"


def _response_ref(response_id: int, prompt_id: int, candidate: int, model_version: int, flagged: int) -> ResponseRef:
    return ResponseRef(
        response_id=response_id,
        prompt_id=prompt_id,
        candidate=candidate,
        model_version=model_version,
        flagged=bool(flagged),
    )


def _feedback_answer(*row: Any) -> FeedbackAnswer:
    return FeedbackAnswer(
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


def _conversation(conversation: str | None) -> str | None:
    return conversation
