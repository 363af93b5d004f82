"""Model versions (when each was first served) and training runs (started, closed, listed)."""

from __future__ import annotations

import time

from storage.repository.base import Queries, inserted_id
from storage.repository.rows import TrainingRun


class RunQueries(Queries):
    async def model_versions_live_at(self) -> dict[int, float]:
        return dict(
            await self._rows(
                lambda version, live_at: (int(version), float(live_at)), "SELECT version, live_at FROM model_versions"
            )
        )

    async def record_model_version(self, version: int, *, source: str, parent: int | None) -> None:
        """Note that ``version`` is now being served (first time only)."""
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO model_versions (version, parent, source, live_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (version) DO NOTHING",
                (version, parent, source, time.time()),
            )

    async def start_training_run(self, *, parent_version: int) -> int:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO training_runs (started_at, status, parent_version) VALUES (?, 'running', ?) RETURNING id",
                (time.time(), parent_version),
            )
            return await inserted_id(cursor)

    async def finish_training_run(  # noqa: PLR0913  one keyword per column a run's end records
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
        return await self._rows(int, "SELECT id FROM training_runs WHERE status = 'running' ORDER BY id")

    async def training_runs(self, *, limit: int = 20) -> list[TrainingRun]:
        """The latest runs, newest first."""
        return await self._rows(
            TrainingRun,
            "SELECT id, started_at, finished_at, status, parent_version, new_version, examples, reason, tracking"
            " FROM training_runs ORDER BY id DESC LIMIT ?",
            (limit,),
        )
