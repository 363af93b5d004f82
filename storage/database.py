"""The database: one long-lived connection per process and its numbered migrations.

SQLite through aiosqlite is the embedded default (a file path); a ``postgresql://`` URL
opens PostgreSQL instead (:mod:`storage.postgres`, several bot processes on one database).
Both give the repository the same small surface: :meth:`Database.transaction` and
:meth:`Database.reading` hand out a connection whose ``execute(sql, parameters)`` takes
``?`` placeholders and returns a cursor with ``fetchone``/``fetchall``/``rowcount``. The
SQL the repository writes is the part both dialects share; what differs (triggers, date
arithmetic, locks, wiping deleted text) lives in each dialect's migrations and class.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# SQLite's primary result codes that say the file or its folder cannot be used as it is
# (sqlite3.h): PERM, BUSY, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, AUTH, NOTADB.
# SQLITE_ERROR, a mistake in our SQL, is not among them: that stays a bug with a traceback.
_UNUSABLE_CODES = frozenset({3, 5, 8, 10, 11, 13, 14, 23, 26})
# Python 3.10 has no sqlite_errorcode: the same conditions by SQLite's messages.
_UNUSABLE_MESSAGES = (
    "readonly",
    "disk is full",
    "disk i/o error",
    "unable to open",
    "not a database",
    "malformed",
    "locked",
)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(target: Path | str) -> bool:
    """Whether ``target`` names a PostgreSQL server (a URL) rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def safe_url(url: str) -> str:
    """``url`` without its password (``postgresql://bot:***@db/thumbtune``), for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_password(url: str) -> str | None:
    """The password in ``url`` (for the log to mask), or None."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class DatabaseUnavailable(Exception):
    """The database cannot be used (read-only, full disk, not a database, server refuses...).

    The message is one line: where (a path, or a URL without its password) and the reason,
    for the operator to act on.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"cannot use the database {path}: {reason}")
        self.path = path
        self.reason = reason


class Cursor(Protocol):
    """What a statement gives back, on either backend."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...  # per column: its name first (DB-API)

    async def fetchone(self) -> Any: ...

    async def fetchall(self) -> Iterable[Any]: ...


class Connection(Protocol):
    """The connection the repository writes SQL to: ``?`` placeholders on both backends."""

    async def execute(self, sql: str, parameters: Iterable[Any] = ..., /) -> Cursor: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


def unusable_database(path: Path, exc: BaseException) -> DatabaseUnavailable | None:
    """The error as :class:`DatabaseUnavailable` when the file system or the file is at fault."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        return DatabaseUnavailable(path, f"{exc.strerror or exc}{where}")
    if isinstance(exc, sqlite3.Error):
        code: int | None = getattr(exc, "sqlite_errorcode", None)
        reason = str(exc)
        if code is not None:
            unusable = code & 0xFF in _UNUSABLE_CODES  # the primary code of an extended one
        else:
            unusable = any(message in reason.lower() for message in _UNUSABLE_MESSAGES)
        if unusable:
            if path.is_dir():  # SQLite says only "unable to open database file"
                reason += " (it is a folder)"
            return DatabaseUnavailable(path, reason)
    return None


def migration_files(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration shipped for ``dialect``, in order.

    SQLite's are in ``storage/migrations``, PostgreSQL's in ``storage/migrations/postgresql``:
    one history, the same numbers and names, each file written in its dialect."""
    package = "storage.migrations" if dialect == "sqlite" else f"storage.migrations.{dialect}"
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [number for number, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migration numbers must run 1, 2, 3, ... without gaps: {numbers}")
    return found


class Database:
    """One connection per process; every statement goes through one lock.

    The lock makes each :meth:`transaction` atomic with respect to the rest of the
    process (coroutines would otherwise interleave inside each other's transactions).
    Other processes are kept apart by the database itself: SQLite's locking (WAL + busy
    timeout), or PostgreSQL's row locks and the transaction locks of :meth:`hold`.
    :meth:`open` picks the backend: a ``postgresql://`` URL or a SQLite file path.
    """

    dialect = "sqlite"
    schemes: ClassVar[tuple[str, ...]] = ()  # the URL schemes a backend opens (a subclass sets them)
    _backends: ClassVar[dict[str, type[Database]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A backend registers itself (storage/__init__.py imports storage.postgres), so this
        # module needs no import of the backends built on it.
        super().__init_subclass__(**kwargs)
        for scheme in cls.schemes:
            Database._backends[scheme] = cls

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.path: Path | str = ""

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        migrations: Sequence[tuple[int, str, str]] | None = None,
    ) -> Database:
        """Open (creating if needed) and bring the schema up to date.

        ``path``: a SQLite file, or a ``postgresql://`` URL. ``migrations`` defaults to
        the files shipped for the backend. A database that cannot be used (read-only,
        full, not a database, a folder that cannot be created, a server that refuses)
        raises :class:`DatabaseUnavailable`; a mistake in a migration raises the
        driver's own error.
        """
        if isinstance(path, str) and "://" in path:
            url: str = path
            backend = next((cls for scheme, cls in Database._backends.items() if url.startswith(scheme)), None)
            if backend is None:
                raise DatabaseUnavailable(safe_url(url), "not a database URL this bot opens (postgresql://...)")
            return await backend.connect(url, migrations=migrations)
        return await SqliteDatabase.open_file(Path(path), busy_timeout_ms=busy_timeout_ms, migrations=migrations)

    @classmethod
    async def connect(cls, url: str, *, migrations: Sequence[tuple[int, str, str]] | None = None) -> Database:
        """Open a database named by a URL (a backend with :attr:`schemes` implements it)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A write transaction (committed, or rolled back on error), exclusive in-process."""
        raise NotImplementedError
        yield

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Connection]:
        """The connection for reads, never in the middle of another coroutine's write."""
        raise NotImplementedError
        yield

    async def hold(self, db: Connection, name: str) -> None:
        """Inside a transaction: keep other processes' transactions that hold ``name`` out
        until this one ends (what one person's vote cap and forget need). SQLite's writers
        already take turns (``BEGIN IMMEDIATE``): nothing to do there."""

    async def try_lead(self, name: str) -> bool:
        """Whether this process holds (or now takes) the lead of ``name`` (training) for as
        long as it runs; one process at a time. A SQLite file has one bot process: always."""
        return True

    async def alive(self, replica: str) -> bool:
        """Whether the bot process named ``replica`` (see :attr:`replica`) still runs."""
        return replica == self.replica

    @asynccontextmanager
    async def bulk_loading(self, db: Connection) -> AsyncIterator[None]:
        """Inside a transaction, around inserting many answers and votes at once (a copy, a
        benchmark's data): the statistics counters are right when it ends. SQLite's
        triggers count each row cheaply; PostgreSQL's are set aside and the counters
        recomputed from the rows at the end (see :class:`storage.postgres.PostgresDatabase`)."""
        yield

    async def recount(self, db: Connection) -> None:
        """Recompute every statistics counter from the rows (what the triggers keep)."""
        day = self.day_sql.format("created_at")
        thumbs = "sum(CASE WHEN reward > 0 THEN 1 ELSE 0 END), sum(CASE WHEN reward < 0 THEN 1 ELSE 0 END)"
        for table in ("version_counts", "version_voters", "day_counts"):
            await db.execute(f"DELETE FROM {table}")
        await db.execute(
            "INSERT INTO version_counts (version, answers, up, down)"
            " SELECT version, sum(answers), sum(up), sum(down) FROM ("
            " SELECT model_version AS version, count(*) AS answers, 0 AS up, 0 AS down FROM responses"
            " GROUP BY model_version UNION ALL"
            f" SELECT model_version, 0, {thumbs} FROM votes WHERE comparison = 0 GROUP BY model_version"
            ") AS parts GROUP BY version"
        )
        await db.execute(
            "INSERT INTO version_voters (version, voter, votes)"
            " SELECT model_version, voter, count(*) FROM votes GROUP BY model_version, voter"
        )
        await db.execute(
            f"INSERT INTO day_counts (day, votes, up, down) SELECT {day}, count(*), {thumbs}"
            f" FROM votes WHERE comparison = 0 GROUP BY {day}"
        )

    # The UTC day (YYYY-MM-DD) of a Unix time column, in this dialect.
    day_sql = "date({}, 'unixepoch')"

    async def after_bulk_insert(self, db: Connection, table: str) -> None:
        """After rows were inserted with their ids (a copy): the next id follows them.
        SQLite takes max(id) + 1 by itself."""

    @property
    def replica(self) -> str:
        """This process's name among those sharing the database (what owns a pending prompt)."""
        return "local"

    async def applied_migrations(self) -> list[int]:
        async with self.reading() as db:
            cursor = await db.execute("SELECT number FROM schema_migrations ORDER BY number")
            return [row[0] for row in await cursor.fetchall()]

    async def migrate(self, migrations: Sequence[tuple[int, str, str]]) -> list[int]:
        """Apply the migrations this database has not seen yet; return their numbers."""
        async with self.transaction() as db:
            await self._before_migrating(db)
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cursor = await db.execute("SELECT number FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            applied = []
            for number, name, sql in migrations:
                if number in done:
                    continue
                await self._run_script(db, sql)
                await db.execute(
                    "INSERT INTO schema_migrations (number, name, applied_at) VALUES (?, ?, ?)",
                    (number, name, time.time()),
                )
                applied.append(number)
                log.info("applied migration %s", name)
            return applied

    async def _before_migrating(self, db: Connection) -> None:
        """Inside the migration's transaction, before anything is read."""

    async def _run_script(self, db: Connection, sql: str) -> None:
        raise NotImplementedError

    async def checkpoint(self) -> bool:
        """After deleting what must go (forget me): make the deleted text leave the files as
        far as the backend can; False when something kept it from finishing."""
        raise NotImplementedError

    async def integrity_check(self) -> str:
        """ "ok", or what the backend's own check found wrong."""
        raise NotImplementedError


class SqliteDatabase(Database):
    """The embedded default: one aiosqlite connection to a file."""

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        super().__init__()
        self._connection = connection
        self.path = path

    @classmethod
    async def open_file(
        cls,
        path: Path,
        *,
        busy_timeout_ms: int = 5000,
        migrations: Sequence[tuple[int, str, str]] | None = None,
    ) -> SqliteDatabase:
        try:
            return await cls._open(path, busy_timeout_ms=busy_timeout_ms, migrations=migrations)
        except (OSError, sqlite3.Error) as exc:
            unusable = unusable_database(path, exc)
            if unusable is None:
                raise
            raise unusable from exc

    @classmethod
    async def _open(
        cls, path: Path, *, busy_timeout_ms: int, migrations: Sequence[tuple[int, str, str]] | None
    ) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A file SQLite cannot open fails here, not in aiosqlite.connect: that one leaves
        # its worker thread to report to an event loop that may be closed by then.
        await asyncio.to_thread(_try_open, path)
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA synchronous = NORMAL")
            await connection.execute("PRAGMA foreign_keys = ON")
            # Deleted and overwritten content is zeroed in the file, not left in free space.
            await connection.execute("PRAGMA secure_delete = ON")
            database = cls(connection, path)
            await database.migrate(migration_files() if migrations is None else migrations)
        except BaseException:
            await connection.close()
            raise
        return database

    async def close(self) -> None:
        async with self._lock:
            await self._connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error), exclusive in-process."""
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            else:
                await self._connection.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._connection

    async def _run_script(self, db: Connection, sql: str) -> None:
        # executescript() would COMMIT our transaction; run statement by statement.
        for statement in _split_statements(sql):
            await db.execute(statement)

    async def checkpoint(self) -> bool:
        """Copy the WAL into the database file and truncate the WAL to zero bytes, so old
        page images (deleted text among them) leave it; False when a reader in another
        process kept it from finishing (it is then completed by a later checkpoint)."""
        async with self._lock:
            cursor = await self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            row = await cursor.fetchone()
        return row is not None and row[0] == 0

    async def integrity_check(self) -> str:
        async with self.reading() as db:
            cursor = await db.execute("PRAGMA integrity_check")
            row = await cursor.fetchone()
            return str(row[0]) if row is not None else "no answer from PRAGMA integrity_check"


def _try_open(path: Path) -> None:
    sqlite3.connect(path).close()


def _split_statements(sql: str) -> list[str]:
    """Split a migration into complete statements using SQLite's own parser."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if not buffer and line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise RuntimeError(f"incomplete SQL statement in migration: {buffer.strip()[:80]}")
    return statements
