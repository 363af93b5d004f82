"""The Slack adapter: a slack-bolt ``AsyncApp`` and the parts of this package, composed once.

:class:`SlackBot` runs the lifecycle every platform shares (:class:`bot.adapters.base.Platform`)
over Slack's transport; the parts do the rest, one concern each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import Platform
from bot.adapters.slack.catchup import CatchUp
from bot.adapters.slack.config import SlackConfig
from bot.adapters.slack.listeners import Listeners
from bot.adapters.slack.payloads import PLATFORM, Missed
from bot.adapters.slack.replies import Replies
from bot.adapters.slack.transport import Transport
from bot.adapters.slack.web_api import Users, api_error, web_client
from bot.catchup import ShownReactions
from bot.service import BotService
from bot.settings import Settings, SettingsError
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)


class SlackBot(Platform[Missed]):
    """The bolt app with our listeners: :meth:`serve` connects (Socket Mode or HTTP) and serves."""

    platform: ClassVar[str] = PLATFORM

    def __init__(self, service: BotService, *, config: SlackConfig, client: AsyncWebClient | None = None) -> None:
        super().__init__(service, lifecycle=config.lifecycle, correction_prefix=config.correction_prefix)
        self.config = config
        self.app = AsyncApp(
            client=client or web_client(token=config.bot_token, api_url=config.api_url),
            signing_secret=config.signing_secret,
            name="thumbtune",
            # Commit, then acknowledge: listeners store first, the 200 / ack follows.
            process_before_response=True,
            # The transport checks signatures before bolt sees a request; bolt's own check
            # would log every refused request's whole body at INFO.
            request_verification_enabled=False,
        )
        self.users = Users()
        self.replies = Replies(
            service, client=self.app.client, users=self.users, announce_channel=config.announce_channel
        )
        self.transport = Transport(self.app, config=config, draining=self.is_draining)
        self.listeners = Listeners(
            service,
            users=self.users,
            replies=self.replies,
            in_flight=self.in_flight,
            correction=self.correction,
            draining=self.is_draining,
        )
        self.listeners.register(self.app)
        self.catching_up = CatchUp(
            service, client=self.app.client, users=self.users, correction=self.correction, take=self.listeners.take
        )
        self.events_started = self.listeners.events_started  # event ids of the newest listeners started
        self._stopped = asyncio.Event()

    # --- the adapter contract -------------------------------------------------------
    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        SlackConfig.from_settings(settings)

    @classmethod
    def from_settings(cls, service: BotService, settings: Settings) -> SlackBot:
        return cls(service, config=SlackConfig.from_settings(settings))

    async def sign_in(self) -> None:
        # Fail at start-up with a clear line rather than on the first event.
        try:
            identity = await self.app.client.auth_test()
        except SlackApiError as exc:
            raise SettingsError(f"SLACK_BOT_TOKEN: Slack refused it ({api_error(exc)})") from None
        log.info("slack: signed in as %s in %s", identity.get("user"), identity.get("team"))
        self.users.own_id = identity.get("user_id")
        # The app-level token is checked when Socket Mode connects (Transport.serve_socket_mode).

    async def connect_and_serve(self) -> None:
        """Connect (Socket Mode or HTTP) and serve until :meth:`stop`; then finish the answers in flight."""
        async with self.transport.serving():
            # Under an app's history limits catching up can take many minutes: a stop cuts it short.
            self.connected_now()
            try:
                await self._stopped.wait()
            finally:
                await self.stop_catching_up()
            await self.drain()  # still connected: new events get 503 (no ack), answers are posted

    async def stop(self) -> None:
        """Stop taking events (503, no ack: Slack sends them again) and make :meth:`serve` return."""
        self.draining = True
        self._stopped.set()

    def serve_http(self, *, host: str | None = None, port: int | None = None) -> AbstractAsyncContextManager[str]:
        """Serve the Events / slash command endpoint; yields its URL (port 0 picks a free one)."""
        return self.transport.serve_http(host=host, port=port)

    def serve_socket_mode(self) -> AbstractAsyncContextManager[None]:
        """Connect over Socket Mode with the app-level token (no public URL needed)."""
        return self.transport.serve_socket_mode()

    async def announce(self, text: str) -> None:
        await self.replies.announce(text)

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        await self.replies.answer(pending, late=late)

    # --- catching up after downtime ------------------------------------------------
    async def missed_since(self, *, hours: float, most: int) -> list[tuple[float, Missed, str]]:
        return await self.catching_up.missed_since(hours=hours)

    async def take_missed(self, message: Missed) -> Coroutine[Any, Any, None] | None:
        return await self.catching_up.take_missed(message)

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        return await self.catching_up.reactions_on(message_key)


ADAPTER = SlackBot
