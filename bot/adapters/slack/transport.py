"""How Slack reaches the bot: Socket Mode with the app-level token, or HTTP at ``/slack/events``.

Over HTTP, bolt's aiohttp adapter dispatches what passes the signature check; a request
that is not signed with our secret (or is stale) is refused with 401 before bolt reads
it. While the bot stops, new events get 503 (no ack): Slack sends them again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.adapters.slack.config import SlackConfig
from bot.adapters.slack.payloads import describe, malformed
from bot.adapters.slack.web_api import api_error
from bot.settings import SettingsError

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Slack's rule (and slack_sdk's SignatureVerifier's): a signature older than 5 minutes is refused.
SIGNATURE_MAX_AGE_S = 60 * 5


def unsigned(body: bytes, headers: Mapping[str, str], *, secret: str) -> str | None:
    """Why the request is not signed by Slack with ``secret``, or None when it is."""
    timestamp, signature = headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        return "no signature"
    try:
        stale = abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_S
    except ValueError:
        return "a timestamp that is not a number"
    if stale:
        return "a stale timestamp"
    try:
        valid = SignatureVerifier(secret).is_valid(body, timestamp, signature)
    except UnicodeDecodeError:  # slack_sdk verifies text; Slack sends nothing else
        return "a body that is not UTF-8"
    return None if valid else "a wrong signature"


class Transport:
    """The connection of one bolt app to Slack; ``draining`` tells when new events are refused."""

    def __init__(self, app: AsyncApp, *, config: SlackConfig, draining: Callable[[], bool]) -> None:
        self.app = app
        self.config = config
        self.draining = draining

    def serving(self) -> AbstractAsyncContextManager[object]:
        """Socket Mode when an app-level token is set, else HTTP."""
        return self.serve_socket_mode() if self.config.socket_mode else self.serve_http()

    async def handle_http(self, request: web.Request) -> web.Response:
        """Verify the signature, then bolt's aiohttp adapter: dispatch, answer within Slack's 3 s.

        A request without a valid, fresh signature is refused with 401 before bolt sees it,
        and logged as one short line: why, its size and a hash, never its body.
        """
        if self.draining():  # stopping: Slack sends the event again (to the next run)
            return web.Response(status=503, text="shutting down", headers={"Retry-After": "5"})
        body = await request.read()
        refused = unsigned(body, request.headers, secret=self.config.signing_secret)
        if refused is not None:
            log.info(
                "slack: refused a request to %s (%s): %d bytes, sha256 %s",
                EVENTS_PATH,
                refused,
                len(body),
                hashlib.sha256(body).hexdigest()[:16],
            )
            return web.Response(status=401, text="invalid request")
        try:
            bolt_request = await to_bolt_request(request)
            if malformed(bolt_request.body):  # bolt's middleware would fail on it, with a traceback
                log.info("slack: refused a malformed request to %s: %s", EVENTS_PATH, describe(bolt_request.body))
                return web.Response(status=400, text="malformed request")
            bolt_response = await self.app.async_dispatch(bolt_request)
        except Exception:
            log.warning("slack: could not read a request to %s", EVENTS_PATH, exc_info=True)
            bolt_request, bolt_response = None, None
        if bolt_response is not None and bolt_response.status < 500:
            return await to_aiohttp_response(bolt_response)
        # bolt answers 500 ("try again later") to requests Slack never sends: a body that is
        # not UTF-8 or JSON, an envelope whose "event" is null. Say what is wrong instead: 400.
        if bolt_request is None or bolt_response is None or malformed(bolt_request.body):
            return web.Response(status=400, text="malformed request")
        return await to_aiohttp_response(bolt_response)  # a failure of ours before the ack

    @asynccontextmanager
    async def serve_http(self, *, host: str | None = None, port: int | None = None) -> AsyncIterator[str]:
        """Serve the Events / slash command endpoint; yields its URL (port 0 picks a free one)."""
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self.handle_http)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        try:
            bind_host = self.config.http_host if host is None else host
            bind_port = self.config.http_port if port is None else port
            try:
                await web.TCPSite(runner, bind_host, bind_port).start()
            except OSError as exc:
                raise SettingsError(
                    f"THUMBTUNE_HTTP_PORT: cannot listen on {bind_host}:{bind_port} ({exc.strerror or exc})"
                ) from None
            bound_host, bound_port = runner.addresses[0][:2]
            url = f"http://{bound_host}:{bound_port}{EVENTS_PATH}"
            log.info("slack: HTTP mode, listening for events on %s", url)
            yield url
        finally:
            await runner.cleanup()

    @asynccontextmanager
    async def serve_socket_mode(self) -> AsyncIterator[None]:
        """Connect over Socket Mode with the app-level token (no public URL needed)."""
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        if self.config.app_token is None:
            raise SettingsError("SLACK_APP_TOKEN: needed for Socket Mode")
        handler = AsyncSocketModeHandler(self.app, self.config.app_token)
        # Ask for the connection URL once (apps.connections.open is Tier 1) and check the token
        # with it: slack_sdk's connect() would ask again, and retry a refused token forever.
        try:
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
        except SlackApiError as exc:
            await handler.close_async()
            raise SettingsError(f"SLACK_APP_TOKEN: Slack refused it ({api_error(exc)})") from None
        await handler.connect_async()
        log.info("slack: connected in Socket Mode")
        try:
            yield
        finally:
            await handler.close_async()
