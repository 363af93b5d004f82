"""The bot's own HTTP listener for operators: ``/healthz`` and ``/metrics``.

It listens on ``THUMBTUNE_DASHBOARD_HOST:THUMBTUNE_DASHBOARD_PORT`` (default
``127.0.0.1:8080``; port 0 turns it off) while the bot runs, whatever its adapter.
Bound to an address other than loopback it needs ``THUMBTUNE_DASHBOARD_TOKEN`` (the
settings refuse to start without one) and every request must carry it as
``Authorization: Bearer TOKEN``; a missing or wrong one gets 401.

- ``GET /healthz``: JSON (serving version, queue depth, database ok, the last training
  run and its status, whether the adapter is connected); 200 when healthy, else 503.
- ``GET /metrics``: the Prometheus text exposition of bot.metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.metrics import CONTENT_TYPE
from bot.settings import SettingsError

if TYPE_CHECKING:
    from bot.adapters.base import Adapter
    from bot.generation import Generator
    from bot.metrics import Metrics
    from storage.database import Database
    from storage.repository import Repository

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusServer:
    """``/healthz`` and ``/metrics`` for one running bot."""

    def __init__(
        self,
        *,
        database: Database,
        repository: Repository,
        generator: Generator,
        metrics: Metrics,
        host: str,
        port: int,
        token: str | None,
    ) -> None:
        self.database, self.repository, self.generator = database, repository, generator
        self.numbers = metrics
        self.host, self.port = host, port
        self._token = token  # never logged
        self.adapter: Adapter | None = None  # set once the adapter runs (its connection state)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._authorised])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise SettingsError(
                f"THUMBTUNE_DASHBOARD_PORT: cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "choose another port, or 0 to turn the listener off"
            ) from None
        if self.port == 0:  # a free port was asked for (tests): say which one it got
            sockets = getattr(site._server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        log.info("health and metrics at %s/healthz and %s/metrics", self.url, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return web.json_response(
                    {"error": "a bearer token is needed (THUMBTUNE_DASHBOARD_TOKEN)"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="thumbtune"'},
                )
        return await handler(request)

    async def healthz(self, request: web.Request) -> web.Response:
        database_ok = await self._database_ok()
        runs = await self.repository.training_runs(limit=1) if database_ok else []
        connected = self.adapter.connected() if self.adapter is not None else None
        body: dict[str, Any] = {
            "serving_version": self.generator.version,
            "queue_depth": self.generator.queued(),
            "database_ok": database_ok,
            "adapter": self.adapter.platform if self.adapter is not None else None,
            "adapter_connected": connected,
            "last_training_run": (
                {"id": runs[0].run_id, "status": runs[0].status, "finished_at": runs[0].finished_at} if runs else None
            ),
        }
        healthy = database_ok and connected is not False
        body["status"] = "ok" if healthy else "unhealthy"
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.numbers.text(), headers={"Content-Type": CONTENT_TYPE})

    async def _database_ok(self) -> bool:
        async def answer() -> None:
            async with self.database.reading() as db:
                await (await db.execute("SELECT 1")).fetchone()

        try:
            await asyncio.wait_for(answer(), timeout=2)
        except Exception as exc:  # closed, locked, unreadable: unhealthy, and say why in the log
            log.warning("health check: the database does not answer (%s)", type(exc).__name__)
            return False
        return True
