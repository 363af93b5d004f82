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
                " event_id, received_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (platform, channel, thread, user, author, text, conversation, event_id, now, self.database.replica),
            )
            pending_id = await inserted_id(cursor)
        return PendingPrompt(pending_id, platform, channel, thread, user, text, conversation, event_id, now, None)

    async def place_pending(self, pending_id: int, *, thread: str, conversation: str | None) -> None:
        """Note where a pending prompt's answer goes, once the adapter has made that place."""
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE pending_prompts SET thread = ?, conversation = ? WHERE id = ?",
                (thread, conversation, pending_id),
            )

    async def pending_prompts(self, platform: str) -> list[PendingPrompt]:
        """The prompts of ``platform`` this process is to answer, oldest first: its own, and
        those left by bot processes no longer running (taken over here, so only one process
        answers each). Another running process's prompts are its own to answer."""
        owners = await self._rows(_owner, "SELECT DISTINCT owner FROM pending_prompts WHERE platform = ?", (platform,))
        me = self.database.replica
        for owner in owners:
            if owner == me or (owner is not None and await self.database.alive(owner)):
                continue
            async with self.database.transaction() as db:
                # Two processes starting together: the second finds the rows no longer the dead one's.
                await db.execute(
                    "UPDATE pending_prompts SET owner = ? WHERE platform = ? AND "
                    + ("owner IS NULL" if owner is None else "owner = ?"),
                    (me, platform) if owner is None else (me, platform, owner),
                )
        async with self.database.transaction() as db:
            # Posted (its message bound) but stopped before it was marked answered (a kill while
            # the bot pre-added its reactions): answered already, not to be posted again.
            await db.execute(
                "DELETE FROM pending_prompts WHERE platform = ? AND owner = ? AND prompt_id IN"
                " (SELECT prompt_id FROM responses WHERE message_key IS NOT NULL)",
                (platform, me),
            )
        return await self._rows(
            PendingPrompt,
            "SELECT id, platform, channel, thread, user_id, text, conversation, event_id, received_at, prompt_id"
            " FROM pending_prompts WHERE platform = ? AND owner = ? ORDER BY id",
            (platform, me),
        )

    async def drop_pending(self, pending_id: int) -> None:
        """The prompt was answered (or its answer refused by the platform): it is no longer pending."""
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM pending_prompts WHERE id = ?", (pending_id,))


def _owner(owner: str | None) -> str | None:
    return owner
