"""Pending prompts: taken (and acknowledged) but not answered yet, so a restart answers them."""

from __future__ import annotations

import time

from storage.repository.base import Queries, inserted_id
from storage.repository.events import new_event
from storage.repository.rows import PendingPrompt


class PendingQueries(Queries):
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
            if not await new_event(db, None if event_id is None else (platform, event_id)):
                return None
            cursor = await db.execute(
                "INSERT INTO pending_prompts (platform, channel, thread, user_id, author, text, conversation,"
                " event_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (platform, channel, thread, user, author, text, conversation, event_id, now),
            )
            pending_id = inserted_id(cursor)
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
        return await self._rows(
            PendingPrompt,
            "SELECT id, platform, channel, thread, user_id, text, conversation, event_id, received_at, prompt_id"
            " FROM pending_prompts WHERE platform = ? ORDER BY id",
            (platform,),
        )

    async def drop_pending(self, pending_id: int) -> None:
        """The prompt was answered (or its answer refused by the platform): it is no longer pending."""
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM pending_prompts WHERE id = ?", (pending_id,))
