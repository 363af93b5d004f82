"""PostgreSQL, for several bot processes on one database (``THUMBTUNE_DATABASE_URL``).

psycopg 3, async, one connection per process as with SQLite (the same lock keeps each
transaction whole within the process); other processes are kept apart by PostgreSQL's
row locks, unique constraints and the transaction-scoped advisory locks of :meth:`hold`.
The repository's SQL is written with ``?`` placeholders: :func:`pyformat` turns them into
psycopg's ``%s`` (doubling a literal ``%``), once per statement text.

Two session-scoped advisory locks live as long as this connection, so they go when the
process dies (the server sees the socket close):

- ``replica:<name>``: this process is alive; a pending prompt it owns is not taken over;
- ``lead:<what>``: this process leads ``what`` (training), see :meth:`try_lead`.

A URL's password is never put in a message or a log line (:func:`safe_url`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from storage.database import (
    POSTGRES_SCHEMES,
    Connection,
    Database,
    DatabaseUnavailable,
    migration_files,
    safe_url,
    url_password,
)

log = logging.getLogger(__name__)

# Tables whose deleted rows may hold a forgotten person's words (vacuumed after a forget).
_FORGET_TABLES = ("prompts", "responses", "votes", "corrections", "pending_prompts", "processed_events")
_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@functools.lru_cache(maxsize=1024)
def pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``; a literal ``%`` doubled. Quoted text keeps
    its ``?`` (it is not a placeholder), but its ``%`` is doubled too: psycopg reads them
    before the server parses quotes."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")

    return _QUOTED_OR_MARK.sub(one, sql)


class PgConnection:
    """psycopg's connection speaking the repository's ``?`` placeholders."""

    def __init__(self, raw: psycopg.AsyncConnection[Any]) -> None:
        self.raw = raw

    async def execute(self, sql: str, parameters: Iterable[Any] = (), /) -> psycopg.AsyncCursor[Any]:
        values = tuple(parameters)
        if not values:
            return await self.raw.execute(sql)  # no placeholders: psycopg leaves a % alone
        return await self.raw.execute(pyformat(sql), values)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        async with self.raw.cursor() as cursor:
            await cursor.executemany(pyformat(sql), [tuple(row) for row in rows])


class PostgresDatabase(Database):
    dialect = "postgresql"
    schemes = POSTGRES_SCHEMES

    def __init__(self, raw: psycopg.AsyncConnection[Any], url: str) -> None:
        super().__init__()
        self._raw = raw
        self._connection = PgConnection(raw)
        self.url = url
        self.path = safe_url(url)
        self._replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._leading: set[str] = set()

    @classmethod
    async def connect(
        cls, url: str, *, migrations: Sequence[tuple[int, str, str]] | None = None, connect_timeout_s: float = 10.0
    ) -> PostgresDatabase:
        try:
            raw = await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=max(1, int(connect_timeout_s)), application_name="thumbtune"
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailable(safe_url(url), _one_line(exc, url)) from exc
        database = cls(raw, url)
        try:
            await database._lock_key(f"replica:{database.replica}", wait=True)
            await database.migrate(migration_files("postgresql") if migrations is None else migrations)
        except BaseException:
            await raw.close()
            raise
        return database

    @property
    def replica(self) -> str:
        return self._replica

    async def close(self) -> None:
        async with self._lock:
            await self._raw.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        async with self._lock:
            await self._raw.execute("BEGIN")
            try:
                yield self._connection
            except BaseException:
                await self._raw.execute("ROLLBACK")
                raise
            else:
                await self._raw.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[PgConnection]:
        async with self._lock:
            yield self._connection

    async def hold(self, db: Connection, name: str) -> None:
        await db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"thumbtune:{name}",))

    async def try_lead(self, name: str) -> bool:
        if name in self._leading:
            return True
        if await self._lock_key(f"lead:{name}", wait=False):
            self._leading.add(name)
            log.info("this process (%s) now leads %s", self.replica, name)
            return True
        return False

    async def alive(self, replica: str) -> bool:
        """Whether ``replica``'s connection still holds its lock: taken and at once given
        back when it does not (so the test leaves no trace)."""
        if replica == self.replica:
            return True
        key = f"thumbtune:replica:{replica}"
        async with self.reading() as db:
            cursor = await db.execute("SELECT pg_try_advisory_lock(hashtextextended(?, 0))", (key,))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                await db.execute("SELECT pg_advisory_unlock(hashtextextended(?, 0))", (key,))
                return False
        return True

    day_sql = "thumbtune_day({})"

    @asynccontextmanager
    async def bulk_loading(self, db: Connection) -> AsyncIterator[None]:
        """The counting triggers set aside while the rows go in, the counters recomputed
        after. Each trigger updates a few hot counter rows; one transaction updating the
        same row a million times leaves a million versions of it to step over (quadratic),
        while one aggregate at the end is linear. The table owner (the bot's user, which
        ran the migrations) may do this; the ALTER holds the tables until the commit."""
        for table in ("responses", "votes"):
            await db.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield
        await self.recount(db)
        for table in ("responses", "votes"):
            await db.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")

    async def after_bulk_insert(self, db: Connection, table: str) -> None:
        cursor = await db.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,))
        row = await cursor.fetchone()
        if row is not None and row[0]:  # an identity column: its sequence goes past the copied ids
            await db.execute(f"SELECT setval(?, (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)", (row[0],))

    async def _lock_key(self, name: str, *, wait: bool) -> bool:
        function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        async with self.reading() as db:
            cursor = await db.execute(f"SELECT {function}(hashtextextended(?, 0))", (f"thumbtune:{name}",))
            row = await cursor.fetchone()
        return wait or bool(row is not None and row[0])

    async def _before_migrating(self, db: Connection) -> None:
        # Replicas starting together: one migrates, the others wait and then find it done.
        await self.hold(db, "migrations")

    async def _run_script(self, db: Connection, sql: str) -> None:
        await db.execute(sql)  # several statements in one go (no parameters: the simple protocol)

    async def checkpoint(self) -> bool:
        """VACUUM the tables a forget deletes from, on a connection of its own (VACUUM
        cannot run in a transaction, and this one's lock stays free meanwhile).

        What it promises: the deleted rows' space in those tables and their indexes is
        marked free for reuse, so no query, dump or replica built later sees them. What it
        does not: the bytes are not overwritten on disk (until new rows reuse the space),
        and copies made before it (WAL segments not yet recycled, archived WAL, base
        backups, replicas' own files) keep them: see docs/several-processes.md. False when
        the VACUUM failed (another transaction's snapshot can also keep it from removing
        rows it still sees: they go at a later VACUUM or autovacuum)."""
        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as raw:
                await raw.execute(f"VACUUM {', '.join(_FORGET_TABLES)}")
        except psycopg.Error as exc:
            log.warning("forget: VACUUM did not finish (%s)", _one_line(exc, self.url))
            return False
        return True

    async def integrity_check(self) -> str:
        """PostgreSQL keeps its own pages consistent; this says the server answers and the
        counters agree with the rows they count (what our triggers keep)."""
        async with self.reading() as db:
            cursor = await db.execute(
                "SELECT (SELECT coalesce(sum(answers), 0) FROM version_counts) = (SELECT count(*) FROM responses)"
            )
            row = await cursor.fetchone()
        return "ok" if row is not None and row[0] else "version_counts.answers disagrees with the responses"


def _one_line(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = url_password(url)
    return text.replace(password, "***") if password else text


async def wait_until_ready(url: str, *, timeout_s: float = 30.0) -> None:
    """Connect until the server answers or ``timeout_s`` passes (for tests and scripts that
    just started a server); raises :class:`DatabaseUnavailable` with the last reason."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as raw:
                await raw.execute("SELECT 1")
                return
        except psycopg.Error as exc:
            if loop.time() > deadline:
                raise DatabaseUnavailable(safe_url(url), _one_line(exc, url)) from exc
            await asyncio.sleep(0.1)
