"""The bot's own HTTP listener for operators: the dashboard, ``/healthz`` and ``/metrics``.

It listens on ``THUMBTUNE_DASHBOARD_HOST:THUMBTUNE_DASHBOARD_PORT`` (default
``127.0.0.1:8080``; port 0 turns it off) while the bot runs, whatever its adapter, and
under `thumbtune dashboard` when the bot is down. Bound to an address other than
loopback it needs ``THUMBTUNE_DASHBOARD_TOKEN`` (at least 16 characters; the settings
refuse to start without one): a request carries it as ``Authorization: Bearer TOKEN``,
or a browser signs in on the login form and gets a session cookie; anything else gets
401. Requests for another host name get 421, a client with too many wrong tokens 429
(bot.access). Every response carries the security headers of :data:`SECURITY_HEADERS`.

- ``GET /``, ``GET /versions/N``: the dashboard (bot.dashboard), read-only HTML;
- ``GET /healthz``: JSON (serving version, queue depth, database ok, the last training
  run and its status, whether the adapter is connected, the engine: reachable, which
  version it serves, each vLLM replica); 200 when healthy, else 503.
- ``GET /metrics``: the Prometheus text exposition of bot.metrics;
- ``GET /login``, ``POST /login``, ``POST /logout``: a browser's sign-in and sign-out.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import dashboard
from bot.access import FailureThrottle, HostAllowList, Sessions
from bot.metrics import CONTENT_TYPE
from bot.settings import SettingsError
from storage.redact import Redactor

if TYPE_CHECKING:
    from bot.adapters.base import Adapter
    from bot.generation import Engine
    from bot.metrics import Metrics
    from bot.settings import Settings
    from storage.database import Database
    from storage.registry import ModelRegistry
    from storage.repository import Repository

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "thumbtune_session"
SECURITY_HEADERS = {
    # Nothing on the pages comes from elsewhere and nothing runs: say so to the browser.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="thumbtune"'}
FAILED_SIGN_IN_DELAY_S = 1.0


class WebServer:
    """The dashboard, ``/healthz`` and ``/metrics`` for one bot, or for its data alone
    (`thumbtune dashboard`: no generator, the registry says which version is current)."""

    def __init__(  # noqa: PLR0913  the dashboard's collaborators and settings, composed once in bot.app
        self,
        *,
        database: Database,
        repository: Repository,
        registry: ModelRegistry,
        metrics: Metrics,
        host: str,
        port: int,
        token: str | None,
        allowed_hosts: Sequence[str] = (),
        redact: Callable[[str], str] = str,
        generator: Engine | None = None,
    ) -> None:
        self.database, self.repository, self.registry = database, repository, registry
        self.generator = generator
        self.numbers = metrics
        self.host, self.port = host, port
        self._token = token  # never logged
        self.redact = redact  # texts leave the database for a page scrubbed (THUMBTUNE_REDACT)
        self.hosts = HostAllowList(bound=host, allowed=allowed_hosts)
        self.throttle = FailureThrottle()
        self.sessions = Sessions()
        self.adapter: Adapter | None = None  # set once the adapter runs (its connection state)
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        database: Database,
        repository: Repository,
        registry: ModelRegistry,
        metrics: Metrics,
        generator: Engine | None = None,
    ) -> WebServer:
        token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else None
        return cls(
            database=database,
            repository=repository,
            registry=registry,
            metrics=metrics,
            generator=generator,
            host=settings.dashboard_host,
            port=settings.dashboard_port,
            token=token,
            allowed_hosts=settings.dashboard_allowed_hosts,
            redact=Redactor.from_kinds(settings.redact),
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._right_host, self._authorised])
        app.on_response_prepare.append(_add_security_headers)
        app.router.add_get("/", self.index)
        app.router.add_get("/versions/{version}", self.version)
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
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
        log.info("dashboard at %s/ (health %s/healthz, metrics %s/metrics)", self.url, self.url, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- who may look -------------------------------------------------------------------
    @web.middleware
    async def _right_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Against DNS rebinding: a foreign page that points its own name at this machine sends that name.
        if self.hosts.allows(request.headers.get("Host")):
            return await handler(request)
        return web.Response(
            status=421,
            text="This dashboard does not answer to that host name (THUMBTUNE_DASHBOARD_ALLOWED_HOSTS).\n",
        )

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is None or request.path in ("/login", "/logout"):
            return await handler(request)
        client = _client(request)
        given = request.headers.get("Authorization")
        if given is not None:
            if (wait := self.throttle.retry_after(client)) > 0:
                return _too_many(wait)
            if hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return await handler(request)
            self.throttle.failed(client)
        elif self.sessions.valid(request.cookies.get(COOKIE, "")):
            return await handler(request)
        if request.path in ("/healthz", "/metrics"):
            return web.json_response(
                {"error": "a bearer token is needed (THUMBTUNE_DASHBOARD_TOKEN)"}, status=401, headers=BEARER_CHALLENGE
            )
        return self._html(dashboard.login_page(), status=401, headers=BEARER_CHALLENGE)

    async def login_form(self, request: web.Request) -> web.Response:
        return self._html(dashboard.login_page())

    async def login(self, request: web.Request) -> web.StreamResponse:
        if self._token is None:
            raise web.HTTPSeeOther(location="./")
        form = await request.post()
        given = str(form.get("token", ""))
        # From here to the failure's record nothing awaits: parallel guesses cannot slip past the count.
        client = _client(request)
        if (wait := self.throttle.retry_after(client)) > 0:
            return _too_many(wait)
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            self.throttle.failed(client)
            await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)  # guessing costs time
            return self._html(dashboard.login_page(failed=True), status=401)
        response = web.HTTPSeeOther(location="./")
        secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
        # path="" leaves Path out: the browser scopes the cookie to the folder the login form
        # was posted to, which is a reverse proxy's prefix when there is one.
        response.set_cookie(
            COOKIE,
            self.sessions.start(),
            path="",
            max_age=int(self.sessions.lifetime_s),
            httponly=True,
            samesite="Strict",
            secure=secure,
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.end(request.cookies.get(COOKIE, ""))
        response = web.HTTPSeeOther(location="login" if self._token is not None else "./")
        response.set_cookie(COOKIE, "", path="", max_age=0, httponly=True, samesite="Strict")
        raise response

    # --- pages ------------------------------------------------------------------------
    async def _serving(self) -> int:
        """The version answering now; under `thumbtune dashboard`, the one the bot will serve."""
        if self.generator is not None:
            return self.generator.version
        return await asyncio.to_thread(self.registry.current_version)

    async def index(self, request: web.Request) -> web.Response:
        data = await dashboard.index_data(self.repository, self.registry)
        page = dashboard.index_page(
            data, serving=await self._serving(), sign_out=self._token is not None, redact=self.redact
        )
        return self._html(page)

    async def version(self, request: web.Request) -> web.Response:
        try:
            number = int(request.match_info["version"])
        except ValueError:
            raise web.HTTPNotFound(text="no such version") from None
        status, page = await dashboard.version_page(
            self.repository,
            self.registry,
            number,
            serving=await self._serving(),
            sign_out=self._token is not None,
            redact=self.redact,
        )
        return self._html(page, status=status)

    @staticmethod
    def _html(page: str, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8", headers=headers)

    async def healthz(self, request: web.Request) -> web.Response:
        database_ok = await self._database_ok()
        runs = await self.repository.training_runs(limit=1) if database_ok else []
        connected = self.adapter.connected() if self.adapter is not None else None
        serving = await self._serving()
        body: dict[str, Any] = {
            "serving_version": serving,
            "queue_depth": self.generator.queued() if self.generator is not None else None,
            "database_ok": database_ok,
            "adapter": self.adapter.platform if self.adapter is not None else None,
            "adapter_connected": connected,
            "last_training_run": (
                {"id": runs[0].run_id, "status": runs[0].status, "finished_at": runs[0].finished_at} if runs else None
            ),
        }
        if self.generator is not None:
            engine = self.generator.state()
            body["engine"] = {
                "kind": engine.kind,
                "reachable": engine.reachable,
                "serving_version": engine.version,
                "replicas": [asdict(replica) for replica in engine.replicas],
            }
        engine_ok = self.generator is None or bool(body["engine"]["reachable"])
        healthy = database_ok and connected is not False and engine_ok
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


def _client(request: web.Request) -> str:
    """Whom failures are counted against: the peer's address (behind a proxy, the proxy's)."""
    return request.remote or "unknown"


def _too_many(wait: int) -> web.Response:
    return web.Response(
        status=429, text="Too many wrong tokens: try again later.\n", headers={"Retry-After": str(wait)}
    )


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Every response, errors and /metrics included.
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
