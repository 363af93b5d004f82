"""What every topic's queries stand on: the database, one read step and the small lookups
several topics share. Queries stay parameterised: helpers take SQL text and its parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from storage.database import Connection, Cursor, Database

T = TypeVar("T")


class Queries:
    """The base of each topic class; :class:`storage.repository.Repository` composes them."""

    database: Database

    async def _rows(self, build: Callable[..., T], sql: str, parameters: Iterable[Any] = ()) -> list[T]:
        """Read every row of ``sql``, in order, as ``build(*row)``."""
        async with self.database.reading() as db:
            cursor = await db.execute(sql, parameters)
            rows = await cursor.fetchall()
        return [build(*row) for row in rows]

    async def _row(self, build: Callable[..., T], sql: str, parameters: Iterable[Any] = ()) -> T | None:
        """Read the first row of ``sql`` as ``build(*row)``; None when there is none."""
        async with self.database.reading() as db:
            cursor = await db.execute(sql, parameters)
            row = await cursor.fetchone()
        return build(*row) if row else None


async def inserted_id(cursor: Cursor) -> int:
    """The id of the row an ``INSERT ... RETURNING id`` just wrote (both backends)."""
    row = await cursor.fetchone()
    assert row is not None, "inserted_id reads the row of INSERT ... RETURNING id"
    return int(row[0])


async def count_of(cursor: Cursor) -> int:
    row = await cursor.fetchone()
    assert row is not None, "an aggregate query returns one row"
    return int(row[0])


async def response_exists(db: Connection, response_id: int) -> bool:
    cursor = await db.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,))
    return await cursor.fetchone() is not None


async def live_at(db: Connection, version: int) -> float:
    """When ``version`` was first served; 0.0 when it never was (so "since" means all)."""
    cursor = await db.execute("SELECT live_at FROM model_versions WHERE version = ?", (version,))
    row = await cursor.fetchone()
    return float(row[0]) if row else 0.0
