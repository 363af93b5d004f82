"""Platform events handled once: a platform retries an event it thinks was lost, and the
claim (in the same transaction as what the event records) makes the retry a no-op."""

from __future__ import annotations

import time

from storage.database import Connection
from storage.repository.base import Queries


class EventQueries(Queries):
    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Remember a platform event; False when it was already handled (a retry)."""
        async with self.database.transaction() as db:
            return await claim(db, platform, event_id)


async def new_event(db: Connection, event: tuple[str, str] | None) -> bool:
    """Claim ``event`` (platform, event id) inside the caller's transaction: False when it
    was handled before (a platform's retry), True when it is new or there is none to claim."""
    return event is None or await claim(db, *event)


async def claim(db: Connection, platform: str, event_id: str) -> bool:
    cursor = await db.execute(
        "INSERT INTO processed_events (platform, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (platform, event_id, time.time()),
    )
    return cursor.rowcount == 1
