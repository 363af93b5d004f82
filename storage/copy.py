"""Moving a bot's database: every table from one database to another (SQLite ⇄ PostgreSQL).

The target is migrated to the same schema and must be empty. Rows are copied with their
ids, in one transaction on the target (a failure leaves it empty). The statistics
counters are not copied as rows: the target counts the copied answers and votes itself
(SQLite by its triggers, PostgreSQL by one recount at the end: Database.bulk_loading),
and the copy is accepted only when those counters then equal the source's, and every
table holds as many rows as the source's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.database import Connection, Database

# (table, key columns) in an order that satisfies the foreign keys.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prompts", ("id",)),
    ("responses", ("id",)),
    ("votes", ("id",)),
    ("corrections", ("id",)),
    ("implicit_signals", ("id",)),
    ("processed_events", ("platform", "event_id")),
    ("model_versions", ("version",)),
    ("training_runs", ("id",)),
    ("forgotten_people", ("person",)),
    ("pending_prompts", ("id",)),
)
# Kept by the triggers on answers and votes; compared, never copied.
COUNTERS: tuple[tuple[str, str], ...] = (
    ("version_counts", "SELECT version, answers, up, down FROM version_counts ORDER BY version"),
    ("version_voters", "SELECT version, voter, votes FROM version_voters ORDER BY version, voter"),
    ("day_counts", "SELECT day, votes, up, down FROM day_counts ORDER BY day"),
)
BATCH = 2000


class CopyRefused(Exception):
    """The copy cannot be made (a non-empty target, counts that disagree); one line why."""


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied

    def __str__(self) -> str:
        return ", ".join(f"{table} {count}" for table, count in self.rows.items())


async def copy_database(source: Database, target: Database) -> CopyReport:
    """Copy every table of ``source`` into the empty ``target``; check the counts."""
    async with source.reading() as db:
        wanted = {table: await _count(db, table) for table, _ in TABLES}
        counters = {name: await _all(db, sql) for name, sql in COUNTERS}
    copied: dict[str, int] = {}
    async with target.transaction() as out:
        for table, _ in [*TABLES, *((name, ()) for name, _ in COUNTERS)]:
            if await _count(out, table):
                raise CopyRefused(f"the target already holds data (table {table} is not empty): copy into an empty one")
        async with target.bulk_loading(out):
            for table, key in TABLES:
                copied[table] = await _copy_table(source, out, table, key)
                if key == ("id",):
                    await target.after_bulk_insert(out, table)
        for table, count in copied.items():
            if count != wanted[table] or await _count(out, table) != count:
                raise CopyRefused(f"table {table}: {wanted[table]} rows in the source, {count} copied")
        for name, sql in COUNTERS:
            if _normal(await _all(out, sql)) != _normal(counters[name]):
                raise CopyRefused(
                    f"the counters in {name} differ after the copy: the source's disagree with its rows"
                    " (copy nothing; report it)"
                )
    return CopyReport(rows=copied)


async def _copy_table(source: Database, out: Connection, table: str, key: tuple[str, ...]) -> int:
    order = ", ".join(key)
    after: tuple[Any, ...] | None = None
    columns: list[str] | None = None
    copied = 0
    while True:
        # Keyset pages: each read starts after the last key copied (row values on both backends).
        where = "" if after is None else f" WHERE ({order}) > ({', '.join('?' * len(key))})"
        async with source.reading() as db:
            cursor = await db.execute(
                f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT {BATCH}", () if after is None else after
            )
            rows = [tuple(row) for row in await cursor.fetchall()]
            if columns is None:
                assert cursor.description is not None  # a SELECT describes its columns
                columns = [str(column[0]) for column in cursor.description]
        if not rows:
            return copied
        marks = ", ".join("?" * len(columns))
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        await out.executemany(insert, rows)
        copied += len(rows)
        positions = [columns.index(column) for column in key]
        after = tuple(rows[-1][position] for position in positions)


async def _count(db: Connection, table: str) -> int:
    cursor = await db.execute(f"SELECT count(*) FROM {table}")
    row = await cursor.fetchone()
    return int(row[0])


async def _all(db: Connection, sql: str) -> list[tuple[Any, ...]]:
    cursor = await db.execute(sql)
    return [tuple(row) for row in await cursor.fetchall()]


def _normal(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows compared across backends: whole numbers as ints (SQLite may hand 1.0 for 1);
    zero counters left out (a counter row that counts nothing says nothing)."""
    out = []
    for row in rows:
        values = tuple(int(value) if isinstance(value, float) and value.is_integer() else value for value in row)
        if all(value == 0 for value in values[1:] if isinstance(value, int)):
            continue
        out.append(values)
    return out
