"""What the statistics and the dashboard show: approval per model version, votes per day,
the latest votes (texts and emoji, never who)."""

from __future__ import annotations

import time

from storage.repository.base import Queries
from storage.repository.rows import RecentVote, VersionApproval


class ReportQueries(Queries):
    async def approval_by_version(self) -> list[VersionApproval]:
        """Per model version: answers given, distinct voters, 👍 and 👎 counts."""
        # Read from the running counters the triggers of migration 0003 keep exact.
        return await self._rows(
            lambda *counts: VersionApproval(*map(int, counts)),
            "SELECT c.version, c.answers,"
            " (SELECT count(*) FROM version_voters w WHERE w.version = c.version), c.up, c.down"
            " FROM version_counts c WHERE c.answers > 0 OR c.up > 0 OR c.down > 0 ORDER BY c.version",
        )

    async def votes_per_day(self, *, days: int = 30) -> list[tuple[str, int, int, int]]:
        """(UTC day, votes, up, down) for the last ``days`` days, oldest first."""
        return await self._rows(
            lambda day, votes, up, down: (day, int(votes), int(up), int(down)),
            "SELECT day, votes, up, down FROM day_counts WHERE day >= ? AND votes > 0 ORDER BY day",
            (time.strftime("%Y-%m-%d", time.gmtime(time.time() - days * 86_400)),),
        )

    async def recent_votes(self, *, limit: int = 20) -> list[RecentVote]:
        """The latest votes on answers whose texts are still kept (retention blanks them,
        `forget me` deletes them), newest first; a comparison verdict once."""
        return await self._rows(
            lambda created_at, emoji, prompt_text, answer_text, model_version: RecentVote(
                float(created_at), emoji, prompt_text, answer_text, int(model_version)
            ),
            "SELECT v.created_at, v.emoji, p.text, r.text, r.model_version FROM votes v"
            " JOIN responses r ON r.id = v.response_id JOIN prompts p ON p.id = r.prompt_id"
            " WHERE r.text != '' AND p.text != '' AND (v.comparison = 0 OR r.candidate = 0)"
            " ORDER BY v.id DESC LIMIT ?",
            (limit,),
        )
