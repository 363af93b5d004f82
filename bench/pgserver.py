"""A throwaway local PostgreSQL server, for the benchmarks and the tests.

Started from the server binaries of the machine (Debian's ``postgresql`` package puts
them in /usr/lib/postgresql/<major>/bin) in a temporary folder, on a free port of
127.0.0.1, with trust authentication for one user. ``initdb`` and ``pg_ctl`` refuse to
run as root: as root they run as the ``postgres`` account, in a folder it owns. The
server is stopped (and its folder removed) by :meth:`PostgresServer.stop`, which stops
only the server this object started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

USER = "thumbtune"


class ServerUnavailable(Exception):
    """No PostgreSQL server binaries here, or the server did not start (one line why)."""


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb, or ``PG_BINDIR``'s."""
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").exists() else None
    found = (
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda path: int(path.parent.parent.name),
            reverse=True,
        )
        if Path("/usr/lib/postgresql").is_dir()
        else []
    )
    return found[0].parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int
    bindir: Path
    _as_postgres: list[str] = field(default_factory=list)
    _names: count[int] = field(default_factory=lambda: count(1))

    @classmethod
    def start(cls, *, durable: bool = False, timeout_s: float = 60.0) -> PostgresServer:
        """Start a new server; ``durable=False`` (tests) turns fsync off, which changes
        nothing the tests check and spares the disk."""
        bindir = server_binaries()
        if bindir is None:
            raise ServerUnavailable("no PostgreSQL server binaries (apt-get install postgresql)")
        folder = Path(tempfile.mkdtemp(prefix="thumbtune-pg-"))
        as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            as_postgres = ["runuser", "-u", "postgres", "--"]
        server = cls(folder=folder, port=free_port(), bindir=bindir, _as_postgres=as_postgres)
        data = folder / "data"
        options = f"-k {folder} -p {server.port} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            server._run("initdb", "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C", "--no-sync")
            server._run(
                "pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-o", options,
                "-w", "-t", str(int(timeout_s)), "start",
            )  # fmt: skip
            server._wait_ready(timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, str(self.bindir / tool), *args], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise ServerUnavailable(f"{tool} failed: {(result.stderr or result.stdout).strip()[-400:]} {tail}")

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"the server did not answer within {timeout_s:g} s: {exc}") from exc
                time.sleep(0.05)

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server this object started and remove its folder."""
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(ServerUnavailable, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
