"""Slack: a slack-bolt ``AsyncApp`` that answers mentions, DMs and ``/ask``, and turns reactions into votes.

Payloads are translated here into the core's values (:mod:`bot.events`); the service
never sees a Slack type. Exactly-once handling rests on the envelope's ``event_id``,
which the service claims in the database, so a retried delivery (Slack resends when it
does not see a quick 200, with the same ``event_id``) is a no-op, also after a restart.

Two ways to connect: Socket Mode when an app-level token is set (no public URL needed),
else HTTP, with bolt's aiohttp adapter serving ``/slack/events``.

Commit, then acknowledge: the app processes an event before it answers Slack
(``process_before_response``). A listener stores what the event brings (a vote, a
correction, a prompt as pending) and only then does the 200 (or the Socket Mode ack)
go back; when the database refuses the write, Slack gets a 500 (no ack) and sends the
event again. Generating and posting an answer run afterwards, in tasks of the bot's own.
On :meth:`SlackBot.stop` new events get 503 (no ack) while the answers in flight finish
within ``THUMBTUNE_SHUTDOWN_GRACE_S``; the rest stay pending.

Once connected, the bot answers the prompts left pending by its last run
(:mod:`bot.pending`) and catches up on what it missed while it was down
(:mod:`bot.catchup`, reading reactions with ``reactions.get``). A reply with an
attachment (the ``stats`` chart) gets the file uploaded into the same thread.
Pre-added reactions are best-effort; answers and votes are not.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import Lifecycle, Need, Platform, best_effort
from bot.catchup import MessageUnreadable, ShownReactions
from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, Reply, message_key, shown_text
from bot.service import BotService, NotStored
from bot.settings import Settings, SettingsError, default_of
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
# Slack's rule (and slack_sdk's SignatureVerifier's): a signature older than 5 minutes is refused.
SIGNATURE_MAX_AGE_S = 60 * 5
ASK_COMMAND = "/ask"
THINKING = "thinking… I'll answer in a thread here."
NOT_TAKEN = (
    "I could not take your message just now: my database refused to store it. "
    "Slack will send it to me again; if I still cannot answer, please ask again later."
)
NOT_TAKEN_ASK = "I cannot take questions just now: my database refused to store yours. Please try again later."
# Slack's names for the reactions the core asks to pre-add (Reply.reactions, unicode).
SLACK_NAMES = {"👍": "+1", "👎": "-1", "1\ufe0f\u20e3": "one", "2\ufe0f\u20e3": "two", "🤝": "handshake"}
# How often a rate-limited Web API call is retried after its Retry-After.
RATE_LIMIT_RETRIES = 3
# Event ids of the listeners started most recently (SlackBot.events_started), for diagnostics and tests.
EVENTS_REMEMBERED = 256
# Longest piece of a payload (an emoji name, an id) quoted in one log line.
LOGGED_CHARS = 64
# Each feature's bot scopes, the Web API methods it calls and the events it needs, declared
# once: bot/adapters/slack_manifest.yml asks for exactly these (tests/test_slack.py checks it,
# and that every method this module calls is here); the scope table in docs/slack.md follows it.
_HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")
NEEDS: tuple[Need, ...] = (
    Need("check the bot token at start", (), methods=("auth.test",)),
    Need("Socket Mode (the app-level token's connections:write)", (), methods=("apps.connections.open",)),
    Need(
        "answer a mention in a channel or group DM",
        ("app_mentions:read", "chat:write"),
        methods=("chat.postMessage",),
        events=("app_mention",),
    ),
    Need(
        "answer a direct message", ("im:history", "chat:write"), methods=("chat.postMessage",), events=("message.im",)
    ),
    Need(
        "corrections replied in an answer's thread (public, private channels, group DMs)",
        ("channels:history", "groups:history", "mpim:history"),
        events=("message.channels", "message.groups", "message.mpim"),
    ),
    Need(
        "/ask (the question is posted, the answer in its thread)",
        ("commands", "chat:write"),
        methods=("chat.postMessage",),
    ),
    Need("votes: people's reactions on answers", ("reactions:read",), events=("reaction_added", "reaction_removed")),
    Need("tell people from bots when they react", ("users:read",), methods=("users.info",)),
    Need("pre-add 👍/👎 to each answer", ("reactions:write",), methods=("reactions.add",)),
    Need("re-read the reactions on answers after downtime", ("reactions:read",), methods=("reactions.get",)),
    Need(
        "find prompts sent while down: the conversations the bot is in, and their history",
        ("channels:read", "groups:read", "im:read", "mpim:read", *_HISTORY),
        methods=("users.conversations", "conversations.history", "conversations.replies"),
    ),
    Need(
        "the `stats` chart (a PNG in the thread)",
        ("files:write",),
        methods=("files.getUploadURLExternal", "files.completeUploadExternal"),
    ),
    Need("announce a new version in THUMBTUNE_ANNOUNCE_CHANNEL", ("chat:write",), methods=("chat.postMessage",)),
)
# Message subtypes that are still a person writing; every other subtype (edits,
# deletions, joins, bot messages) is not a prompt.
_PERSON_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


@dataclass(frozen=True)
class SlackConfig:
    """What the Slack adapter needs from the settings (tokens are never shown in repr); the
    defaults are the settings' own (:func:`bot.settings.default_of`)."""

    bot_token: str = field(repr=False)
    signing_secret: str = field(default="", repr=False)
    app_token: str | None = field(default=None, repr=False)
    api_url: str | None = None
    correction_prefix: str = default_of("correction_prefix")
    http_host: str = default_of("http_host")
    http_port: int = default_of("http_port")
    reconcile_hours: float = default_of("reconcile_hours")  # catch up on answers this recent at start; 0 = off
    reconcile_max_messages: int = default_of("reconcile_max_messages")  # ... but on at most this many, newest first
    announce_channel: str | None = None  # where a new model version going live is announced
    pending_hours: float = default_of("pending_hours")  # answer prompts left pending by the last run if this recent
    shutdown_grace_s: float = default_of("shutdown_grace_s")  # on stop, finish the answers in flight this long

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    @property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle(
            reconcile_hours=self.reconcile_hours,
            reconcile_max_messages=self.reconcile_max_messages,
            pending_hours=self.pending_hours,
            shutdown_grace_s=self.shutdown_grace_s,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig:
        """Check the Slack settings up front; a missing one raises :class:`SettingsError` naming it."""
        if settings.slack_bot_token is None:
            raise SettingsError("SLACK_BOT_TOKEN: needed for the Slack adapter (xoxb-...)")
        app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
        if app_token is not None and not app_token.startswith("xapp-"):
            raise SettingsError("SLACK_APP_TOKEN: an app-level token starts with xapp-")
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        if app_token is None and not secret:
            raise SettingsError("SLACK_SIGNING_SECRET: needed in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
        return cls(
            bot_token=settings.slack_bot_token.get_secret_value(),
            signing_secret=secret,
            app_token=app_token,
            api_url=settings.slack_api_url,
            correction_prefix=settings.correction_prefix,
            http_host=settings.http_host,
            http_port=settings.http_port,
            announce_channel=settings.announce_channel,
            **dataclasses.asdict(Lifecycle.from_settings(settings)),
        )


class ShuttingDown(Exception):
    """An event arrived after :meth:`SlackBot.stop`: not taken, not acknowledged; Slack sends it again."""


def web_client(*, token: str, api_url: str | None = None) -> AsyncWebClient:
    """The Web API client: 429s wait for Retry-After and try again; other errors raise."""
    base_url = api_url or AsyncWebClient.BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"  # slack_sdk joins "base_url + method"
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )


@dataclass(frozen=True)
class _Where:
    """A Slack message position: its channel, its ts, and the thread it belongs to."""

    channel: str
    ts: str
    thread_ts: str

    @property
    def conversation(self) -> str:
        return message_key(PLATFORM, self.channel, self.thread_ts)


@dataclass(frozen=True)
class _Missed:
    """A person's message to the bot found after downtime."""

    where: _Where
    user: str
    text: str


class SlackBot(Platform[_Missed]):
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
            # handle_http checks signatures before bolt sees a request; bolt's own check
            # would log every refused request's whole body at INFO.
            request_verification_enabled=False,
        )
        self._bot_users: dict[str, bool] = {}  # user id -> is a bot (users.info, cached)
        self._own_user_id: str | None = None  # from auth.test
        # The envelopes' event ids of the newest listeners started, oldest first.
        self.events_started: collections.deque[str | None] = collections.deque(maxlen=EVENTS_REMEMBERED)
        self._stopped = asyncio.Event()
        self._told_not_taken: set[str] = set()  # event ids whose sender heard that it could not be stored
        self._register()

    # --- the adapter contract -------------------------------------------------------
    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        SlackConfig.from_settings(settings)

    @classmethod
    def from_settings(cls, service: BotService, settings: Settings) -> SlackBot:
        return cls(service, config=SlackConfig.from_settings(settings))

    # --- wiring ---------------------------------------------------------------------
    def _accepting(
        self, listener: Callable[..., Awaitable[Coroutine[Any, Any, None] | None]]
    ) -> Callable[..., Awaitable[None]]:
        """Run an event listener before Slack is acknowledged; what it leaves for later runs in a task.

        The listener stores what the event brings and returns the slow rest (generating and
        posting an answer) as a coroutine, or None. If it raises (the database refused the
        write), bolt answers 500 and sends no ack, so Slack delivers the event again.
        """

        @functools.wraps(listener)
        async def accept(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
            if self.draining:
                raise ShuttingDown(f"stopping: {_describe(body)} is left for Slack to send again")
            self.events_started.append(body.get("event_id"))
            follow_up = await listener(event, body, context)
            if follow_up is not None:
                self._in_own_task(follow_up, body)

        return accept

    def _in_own_task(self, work: Coroutine[Any, Any, None], body: dict[str, Any]) -> None:
        """Run the slow part of handling an event in flight; a failure is logged with the event
        it came from (described: the body has user ids and texts)."""
        self.in_flight.spawn(work, what=_describe(body))

    def _register(self) -> None:
        self.app.event("app_mention")(self._accepting(self._on_mention))
        self.app.event("message")(self._accepting(self._on_message))
        self.app.event("reaction_added")(self._accepting(self._on_reaction_added))
        self.app.event("reaction_removed")(self._accepting(self._on_reaction_removed))
        self.app.command(ASK_COMMAND)(self._on_ask)
        self.app.error(self._on_error)

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        if isinstance(error, ShuttingDown):
            log.info("slack: %s", error)
            return
        # The bot goes on; log what was being handled (never the headers, they carry tokens).
        log.error("slack handler failed for %s: %s", _describe(body), _short(repr(error), 200), exc_info=error)

    # --- serving --------------------------------------------------------------------
    async def handle_http(self, request: web.Request) -> web.Response:
        """Verify the signature, then bolt's aiohttp adapter: dispatch, answer within Slack's 3 s.

        A request without a valid, fresh signature is refused with 401 before bolt sees it,
        and logged as one short line: why, its size and a hash, never its body.
        """
        if self.draining:  # stopping: Slack sends the event again (to the next run)
            return web.Response(status=503, text="shutting down", headers={"Retry-After": "5"})
        body = await request.read()
        refused = self._unsigned(body, request.headers)
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
            if _malformed(bolt_request.body):  # bolt's middleware would fail on it, with a traceback
                log.info("slack: refused a malformed request to %s: %s", EVENTS_PATH, _describe(bolt_request.body))
                return web.Response(status=400, text="malformed request")
            bolt_response = await self.app.async_dispatch(bolt_request)
        except Exception:
            log.warning("slack: could not read a request to %s", EVENTS_PATH, exc_info=True)
            bolt_request, bolt_response = None, None
        if bolt_response is not None and bolt_response.status < 500:
            return await to_aiohttp_response(bolt_response)
        # bolt answers 500 ("try again later") to requests Slack never sends: a body that is
        # not UTF-8 or JSON, an envelope whose "event" is null. Say what is wrong instead: 400.
        if bolt_request is None or bolt_response is None or _malformed(bolt_request.body):
            return web.Response(status=400, text="malformed request")
        return await to_aiohttp_response(bolt_response)  # a failure of ours before the ack

    def _unsigned(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request is not signed by Slack with our secret, or None when it is."""
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
            valid = SignatureVerifier(self.config.signing_secret).is_valid(body, timestamp, signature)
        except UnicodeDecodeError:  # slack_sdk verifies text; Slack sends nothing else
            return "a body that is not UTF-8"
        return None if valid else "a wrong signature"

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
            raise SettingsError(f"SLACK_APP_TOKEN: Slack refused it ({_api_error(exc)})") from None
        await handler.connect_async()
        log.info("slack: connected in Socket Mode")
        try:
            yield
        finally:
            await handler.close_async()

    async def connect_and_serve(self) -> None:
        """Connect (Socket Mode or HTTP) and serve until :meth:`stop`; then finish the answers in flight."""
        serving = self.serve_socket_mode() if self.config.socket_mode else self.serve_http()
        async with serving:
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

    async def sign_in(self) -> None:
        # Fail at start-up with a clear line rather than on the first event.
        try:
            identity = await self.app.client.auth_test()
        except SlackApiError as exc:
            raise SettingsError(f"SLACK_BOT_TOKEN: Slack refused it ({_api_error(exc)})") from None
        log.info("slack: signed in as %s in %s", identity.get("user"), identity.get("team"))
        self._own_user_id = identity.get("user_id")
        # The app-level token is checked when Socket Mode connects (serve_socket_mode).

    # --- catching up after downtime ------------------------------------------------
    async def missed_since(self, *, hours: float, most: int) -> list[tuple[float, _Missed, str]]:
        """People's messages to the bot of the last ``hours`` with no reply of mine after them.

        Read from the conversations the bot is in (``users.conversations``,
        ``conversations.history``, ``conversations.replies`` for threads): a message from a
        person that mentions the bot (or any in a DM). Claimed as ``message:<channel>:<ts>``,
        the id live prompts are claimed by too.
        """
        client = self.app.client
        if self._own_user_id is None:
            self._own_user_id = (await client.auth_test()).get("user_id")
        oldest = time.time() - hours * 3600
        missed: list[tuple[float, _Missed, str]] = []
        skipped: list[str] = []  # what could not be read (rate limits, a thread gone): said in the log
        async for channel, is_im in self._my_conversations(client):
            try:
                async for thread in self._threads_since(channel, oldest, client, skipped):
                    for message, thread_ts in self._unanswered(thread, is_im=is_im, oldest=oldest):
                        where = _Where(channel=channel, ts=message["ts"], thread_ts=thread_ts)
                        text = _strip_mention(message.get("text", ""), self._own_user_id)
                        what = _describe({"event_id": _message_id(where), "event": {"channel": channel}})
                        missed.append((float(message["ts"]), _Missed(where, message["user"], text), what))
            except SlackApiError as exc:
                skipped.append(f"the rest of {channel} ({_api_error(exc)})")
                log.warning("slack: cannot read the history of %s: %s; going on", channel, _api_error(exc))
        if skipped:
            log.warning(
                "slack: looking for missed prompts skipped what Slack would not show: %s",
                ", ".join(skipped[:20]) + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""),
            )
        return missed

    async def take_missed(self, message: _Missed) -> Coroutine[Any, Any, None] | None:
        client = self.app.client
        if await self._is_bot(message.user, client) or self.correction.starts(message.text):
            return None  # a bot's, or a correction: not a prompt, not answered
        where = message.where
        try:
            return await self._take(
                where, user=message.user, text=message.text, event_id=_message_id(where), client=client
            )
        except NotStored:
            log.warning("slack: cannot store a prompt missed while down in %s; going on", where.channel)
            return None

    async def _my_conversations(self, client: AsyncWebClient) -> AsyncIterator[tuple[str, bool]]:
        """(channel id, is a DM) of the conversations the bot is a member of (group DMs too)."""
        pages = _pages(
            client.users_conversations, types="public_channel,private_channel,im,mpim", exclude_archived=True, limit=200
        )
        async for response in pages:
            for channel in response.get("channels") or []:
                if isinstance(channel, dict) and isinstance(channel.get("id"), str):
                    yield channel["id"], bool(channel.get("is_im"))

    async def _threads_since(
        self, channel: str, oldest: float, client: AsyncWebClient, skipped: list[str]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The messages of ``channel`` since ``oldest``, one thread at a time (a lone message is a thread).

        Pages are as long as Slack gives (an app distributed outside the Marketplace gets 15
        messages, one request a minute: the client waits out each 429). A thread that cannot
        be read is noted in ``skipped`` and left out, and the rest of the channel read on.
        """
        async for response in _pages(client.conversations_history, channel=channel, oldest=f"{oldest:.6f}", limit=200):
            for message in response.get("messages") or []:
                if not isinstance(message, dict) or not isinstance(message.get("ts"), str):
                    continue
                if message.get("reply_count") and float(message.get("latest_reply") or 0) > oldest:
                    try:
                        thread = await self._replies(channel, message["ts"], client)
                    except SlackApiError as exc:
                        # Not the parent alone either: the bot's answers in the thread are unknown.
                        skipped.append(f"thread {_short(message['ts'])} in {channel} ({_api_error(exc)})")
                        log.warning(
                            "slack: cannot read a thread in %s: %s; going on with the next", channel, _api_error(exc)
                        )
                        continue
                    yield thread
                else:
                    yield [message]

    async def _replies(self, channel: str, ts: str, client: AsyncWebClient) -> list[dict[str, Any]]:
        thread: list[dict[str, Any]] = []
        async for response in _pages(client.conversations_replies, channel=channel, ts=ts, limit=200):
            thread.extend(m for m in response.get("messages") or [] if isinstance(m, dict) and "ts" in m)
        return thread

    def _unanswered(
        self, thread: list[dict[str, Any]], *, is_im: bool, oldest: float
    ) -> list[tuple[dict[str, Any], str]]:
        """(message, thread ts) of the people's messages to the bot in one thread with no reply of mine after them."""
        mention = f"<@{self._own_user_id}" if self._own_user_id else None
        mine = [float(m["ts"]) for m in thread if m.get("user") == self._own_user_id]
        found = []
        for message in thread:
            ts = message["ts"]
            if (
                float(ts) <= oldest
                or message.get("subtype") not in _PERSON_SUBTYPES
                or message.get("bot_id")
                or not isinstance(message.get("user"), str)
                or message["user"] == self._own_user_id
                or not isinstance(message.get("text", ""), str)
                or not (is_im or (mention is not None and mention in message.get("text", "")))
                or any(answer > float(ts) for answer in mine)
            ):
                continue
            found.append((message, message.get("thread_ts") or ts))
        return found

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        """One ``reactions.get`` (the client waits out 429s); the bot's own and other bots' left out."""
        parts = message_key.split(":")
        if len(parts) != 3:
            raise MessageUnreadable("not a Slack message key")
        channel, ts = parts[1], parts[2]
        client = self.app.client
        if self._own_user_id is None:
            self._own_user_id = (await client.auth_test()).get("user_id")
        try:
            response = await client.reactions_get(channel=channel, timestamp=ts, full=True)
        except SlackApiError as exc:
            error = _api_error(exc)
            raise MessageUnreadable(error, gone=error == "message_not_found") from None
        return await self._people_reactions(response.get("message") or {}, client)

    async def _people_reactions(self, message: dict[str, Any], client: AsyncWebClient) -> ShownReactions:
        """(user, emoji) of people's rating reactions, and the emoji whose user list was cut short."""
        reactions: list[tuple[str, str]] = []
        incomplete: set[str] = set()
        for group in message.get("reactions") or []:
            name, users = group.get("name", ""), group.get("users") or []
            if not self.service.is_reaction_emoji(name):
                continue
            if int(group.get("count", len(users))) > len(users):
                incomplete.add(name)  # Slack lists only some of the people: retract none
            for user in users:
                if user != self._own_user_id and not await self._is_bot(user, client):
                    reactions.append((user, name))
        return ShownReactions(reactions=tuple(reactions), incomplete=frozenset(incomplete))

    # --- asking ---------------------------------------------------------------------
    async def _on_mention(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> Coroutine[Any, Any, None] | None:
        if not _from_someone_somewhere(event):
            return None
        channel = event["channel"]
        if channel.startswith("D"):
            return None  # direct messages arrive as message.im; answering both would answer twice
        text = _strip_mention(event.get("text", ""), context.bot_user_id)
        return await self._take(
            _where(event), user=event.get("user", ""), text=text, event_id=body.get("event_id"), client=context.client
        )

    async def _on_message(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> Coroutine[Any, Any, None] | None:
        if event.get("subtype") not in _PERSON_SUBTYPES or event.get("bot_id") or not _from_someone_somewhere(event):
            return None  # edits, deletions, joins and other bots' messages
        where = _where(event)
        text = event.get("text", "")
        user, event_id = event["user"], body.get("event_id")
        if event.get("channel_type") == "im":
            return await self._take(where, user=user, text=text, event_id=event_id, client=context.client)
        # In channels only thread replies with the prefix matter here; a message that
        # mentions the bot comes as app_mention too and is handled there.
        mentions_bot = context.bot_user_id is not None and f"<@{context.bot_user_id}" in text
        better = self.correction.rest(text)
        if where.ts != where.thread_ts and not mentions_bot and better is not None:
            await self._correct(where, user=user, better=better, event_id=event_id)
        return None

    async def _on_ask(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        question = command.get("text", "").strip()
        if not question:
            await ack(f"Ask me something, for example: {ASK_COMMAND} what is a haiku?")
            return
        if self.draining:
            await ack("I am restarting; please ask again in a moment.")
            return
        channel, user = command.get("channel_id", ""), command.get("user_id", "")
        # Slack does not retry slash commands, but a trigger id is unique per invocation.
        trigger = command.get("trigger_id")
        prompt = IncomingPrompt(
            platform=PLATFORM,
            channel=channel,
            user=user,
            text=question,
            event_id=f"command:{trigger}" if trigger else None,
        )
        try:
            # Stored before the acknowledgement; its thread is made (the question posted) after it.
            pending = await self.service.take_prompt(prompt, thread=None)
        except NotStored:
            await ack(NOT_TAKEN_ASK)  # Slack never resends a command: say so at once
            return
        # Slack wants the acknowledgement within 3 s; generation can take longer.
        await ack(THINKING)
        if pending is not None:
            self._in_own_task(self.answer_pending(pending, client=context.client, respond=respond), body)

    async def _take(
        self, where: _Where, *, user: str, text: str, event_id: str | None, client: AsyncWebClient
    ) -> Coroutine[Any, Any, None] | None:
        """A message addressed to the bot: a correction in an answer's thread, else a question.

        What it brings is stored now; what is returned (answering) runs after the acknowledgement.
        """
        better = self.correction.rest(text)
        if better is None:
            # Claimed by the message, not the envelope: the catch-up of missed prompts
            # (answer_missed) finds the same message by its channel and ts.
            event_id = _message_id(where)
            prompt = IncomingPrompt(
                platform=PLATFORM,
                channel=where.channel,
                user=user,
                text=text,
                conversation=where.conversation,
                event_id=event_id,
            )
            try:
                pending = await self.service.take_prompt(prompt, thread=where.thread_ts)
            except NotStored:
                self._tell_not_taken(where, event_id=event_id, client=client)
                raise  # no acknowledgement: Slack sends the event again
            return None if pending is None else self.answer_pending(pending, client=client)
        if where.ts != where.thread_ts:
            await self._correct(where, user=user, better=better, event_id=event_id)
        elif event_id is None or await self.service.claim_event(PLATFORM, event_id):
            # Outside a thread it is unclear which answer is meant; say how, once per event.
            hint = (
                "To suggest a better answer, reply in the thread of my answer, "
                f"starting with `{self.config.correction_prefix}`"
            )
            return self._post_reply(where, Reply(hint, ok=False), client=client, event_id=event_id)
        return None

    def _tell_not_taken(self, where: _Where, *, event_id: str | None, client: AsyncWebClient) -> None:
        """The prompt could not be stored: say so in its thread, once per event (Slack's retries ask again)."""
        if event_id is not None:
            if event_id in self._told_not_taken:
                return
            self._told_not_taken.add(event_id)

        async def tell() -> None:
            async with best_effort(f"slack: telling {where.channel} a prompt was not stored", logger=log):
                await client.chat_postMessage(channel=where.channel, thread_ts=where.thread_ts, text=NOT_TAKEN)

        self._in_own_task(tell(), {"event_id": event_id})

    async def answer_pending(
        self,
        pending: PendingPrompt,
        *,
        late: bool = False,
        client: AsyncWebClient | None = None,
        respond: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        """Answer a pending prompt in its thread (an /ask gets its question posted first), then mark it answered."""
        client = client or self.app.client
        if pending.thread is None:
            placed = await self._place_question(pending, client=client, respond=respond)
            if placed is None:
                return
            pending = placed
        reply = await self.service.answer_pending(pending, late=late)
        assert pending.thread is not None  # placed above
        where = _Where(channel=pending.channel, ts=pending.thread, thread_ts=pending.thread)
        await self._post_reply(where, reply, client=client, event_id=pending.event_id)
        await self.service.pending_answered(pending)

    async def _place_question(
        self, pending: PendingPrompt, *, client: AsyncWebClient, respond: Callable[..., Awaitable[Any]] | None
    ) -> PendingPrompt | None:
        """/ask: post the question, so the answer has a thread and later turns have context."""
        try:
            posted = await client.chat_postMessage(
                channel=pending.channel, text=f"<@{pending.user}> asked: {pending.text}"
            )
        except SlackApiError as exc:
            log.warning("slack: cannot post the /ask question in %s: %s", pending.channel, _api_error(exc))
            if respond is not None:
                await respond(
                    f"I can't post in this conversation ({_api_error(exc)}). Invite me first, or mention me instead."
                )
            await self.service.pending_answered(pending)  # Slack refused for good: nowhere to answer
            return None
        ts = posted["ts"]
        return await self.service.place_pending(
            pending, thread=ts, conversation=message_key(PLATFORM, pending.channel, ts)
        )

    async def _post_reply(self, where: _Where, reply: Reply, *, client: AsyncWebClient, event_id: str | None) -> None:
        try:
            posted = await client.chat_postMessage(
                channel=where.channel, thread_ts=where.thread_ts, text=shown_text(reply)
            )
        except SlackApiError as exc:
            log.error("slack: could not post the answer in %s (event %s): %s", where.channel, event_id, _api_error(exc))
            return
        if reply.attachment is not None:
            await self._upload(where, reply.attachment, client=client)
        if not reply.ok:
            return  # a refusal or error note: nothing to rate
        answer_ts = posted["ts"]
        await self.service.answer_posted(reply.response_ids[0], message_key(PLATFORM, where.channel, answer_ts))
        for name in (SLACK_NAMES.get(emoji, emoji) for emoji in reply.reactions):
            # People can still add the reaction themselves; the answer stands.
            async with best_effort(f"slack: pre-adding :{name}: in {where.channel}", logger=log, describe=_failure):
                await client.reactions_add(channel=where.channel, timestamp=answer_ts, name=name)

    async def announce(self, text: str) -> None:
        """Post a message of the bot's own in THUMBTUNE_ANNOUNCE_CHANNEL (when it is set)."""
        channel = self.config.announce_channel
        if not channel:
            return
        try:
            await self.app.client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            error = _api_error(exc)
            if error != "not_in_channel":
                raise
            log.warning(
                "slack: cannot announce in THUMBTUNE_ANNOUNCE_CHANNEL %s (not_in_channel): invite the bot there "
                "(/invite @thumbtune), or add the chat:write.public scope for a public channel",
                _short(channel),
            )

    async def _upload(self, where: _Where, path: Path, *, client: AsyncWebClient) -> None:
        """Upload a file (the ``stats`` chart) into the thread; the text is already there."""
        try:
            await client.files_upload_v2(
                channel=where.channel, thread_ts=where.thread_ts, file=str(path), filename=path.name, title=path.name
            )
        except SlackApiError as exc:
            log.warning("slack: could not upload %s in %s: %s", path.name, where.channel, _api_error(exc))
        except (SlackClientError, OSError) as exc:
            log.warning("slack: could not upload %s in %s: %s", path.name, where.channel, exc)

    # --- corrections ----------------------------------------------------------------
    async def _correct(self, where: _Where, *, user: str, better: str, event_id: str | None) -> None:
        answer = await self.service.latest_answer_in(where.conversation)
        if answer is None:
            log.debug("slack: correction in %s has no answer of mine to correct", where.conversation)
            return
        stored = await self.service.on_correction(
            IncomingCorrection(platform=PLATFORM, message_key=answer, user=user, text=better, event_id=event_id)
        )
        log.info("slack: correction of %s %s", answer, "stored" if stored else "not stored")

    # --- rating ---------------------------------------------------------------------
    async def _on_reaction_added(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> Coroutine[Any, Any, None] | None:
        # Stored before the acknowledgement; a database error means no ack, and Slack resends it.
        # No network call before the ack (Slack allows 3 s): whether an unknown reactor is a
        # bot is looked up after it, and a bot's vote taken back then.
        reaction = await self._reaction(event, body, context)
        if reaction is None:
            return None
        outcome = await self.service.on_reaction(reaction)
        log.info(
            "slack: reaction :%s: on %s -> %s", _short(reaction.emoji), _short(reaction.message_key), outcome.value
        )
        if reaction.user in self._bot_users:
            return None
        return self._unless_by_a_bot(reaction, context.client)

    async def _unless_by_a_bot(self, reaction: IncomingReaction, client: AsyncWebClient) -> None:
        """After the ack: look the reactor up (users.info, cached); a bot's vote is taken back."""
        if await self._is_bot(reaction.user, client):
            outcome = await self.service.on_reaction_removed(dataclasses.replace(reaction, event_id=None))
            log.info(
                "slack: reaction :%s: on %s was a bot's: not a vote (%s)",
                _short(reaction.emoji),
                _short(reaction.message_key),
                outcome.value,
            )

    async def _on_reaction_removed(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        reaction = await self._reaction(event, body, context)
        if reaction is not None:
            outcome = await self.service.on_reaction_removed(reaction)
            log.info(
                "slack: reaction :%s: removed from %s -> %s",
                _short(reaction.emoji),
                _short(reaction.message_key),
                outcome.value,
            )

    async def _reaction(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> IncomingReaction | None:
        """The reaction as a core value, or None when it cannot be a person's vote on an answer."""
        item, user, emoji = event.get("item"), event.get("user"), event.get("reaction")
        # A malformed event (an item that is a string, a user that is a list) is no vote.
        item = item if isinstance(item, dict) else {}
        user, emoji = (value if isinstance(value, str) else "" for value in (user, emoji))
        # Cheap checks first, so unrelated reactions cost no API call.
        if item.get("type") != "message" or not user or user == context.bot_user_id:
            ignored = "not a message" if item.get("type") != "message" else "the bot's own" if user else "no user"
        elif event.get("item_user") and event.get("item_user") != context.bot_user_id:
            ignored = "not on an answer of mine"
        elif not self.service.is_reaction_emoji(emoji):  # a rating, a verdict or the flag
            ignored = "not a rating emoji"
        elif self._bot_users.get(user):  # known from an earlier look-up; unknown ones are looked up after the ack
            ignored = "by a bot"
        else:
            return IncomingReaction(
                platform=PLATFORM,
                message_key=message_key(PLATFORM, item.get("channel", ""), item.get("ts", "")),
                user=user,
                emoji=emoji,
                event_id=body.get("event_id"),
            )
        log.info("slack: ignored reaction :%s: (%s, event %s)", _short(emoji), ignored, _short(body.get("event_id")))
        return None

    async def _is_bot(self, user: str, client: AsyncWebClient) -> bool:
        if user not in self._bot_users:
            try:
                info = await client.users_info(user=user)
            except SlackApiError as exc:
                # Better to count a person's vote than to drop it for a lookup failure.
                log.warning("slack: users.info failed for a voter: %s; counting the vote", _api_error(exc))
                return False
            profile = info.get("user") or {}
            self._bot_users[user] = bool(profile.get("is_bot") or profile.get("is_app_user"))
        return self._bot_users[user]


ADAPTER = SlackBot


# --- payload helpers ------------------------------------------------------------------
def _from_someone_somewhere(event: dict[str, Any]) -> bool:
    """A person's message has who, where, when and a text; a malformed event may lack one."""
    return all(
        isinstance(event.get(name), str) and event[name].strip() for name in ("user", "channel", "ts")
    ) and isinstance(event.get("text", ""), str)


def _where(event: dict[str, Any]) -> _Where:
    ts = event.get("ts", "")
    return _Where(channel=event.get("channel", ""), ts=ts, thread_ts=event.get("thread_ts") or ts)


def _message_id(where: _Where) -> str:
    """The id a person's message is claimed by as a prompt, live or found after downtime."""
    return f"message:{where.channel}:{where.ts}"


def _strip_mention(text: str, bot_user_id: str | None) -> str:
    """The prompt without the ``<@U123>`` that addressed the bot."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return " ".join(text.split())


def _malformed(body: object) -> bool:
    """A body no Slack request has: not an object, or an ``event`` that is not an object."""
    return not isinstance(body, dict) or ("event" in body and not isinstance(body["event"], dict))


def _failure(exc: Exception) -> str:
    """A failed Web API call in a few words, for the log (never headers or tokens)."""
    return _api_error(exc) if isinstance(exc, SlackApiError) else f"{type(exc).__name__}: {exc}"


def _api_error(exc: SlackApiError) -> str:
    """Slack's error code (``not_in_channel``), or the HTTP status when the body was not JSON."""
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(exc.response, 'status_code', '?')}"


async def _pages(method: Callable[..., Awaitable[Any]], **args: Any) -> AsyncIterator[Any]:
    """Every page of a cursor-paged Web API method (``response_metadata.next_cursor``)."""
    cursor: str | None = None
    while True:
        response = await method(**args, cursor=cursor)
        yield response
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            return


def _describe(body: object) -> str:
    """What a request was, for the log: its kind, event id and channel; never a user id or a
    text, and never a failure of its own, however malformed the body."""
    if not isinstance(body, dict):
        return f"a request body that is a {type(body).__name__}, not an object"
    event = body.get("event")
    if isinstance(event, dict) and event:
        item = event.get("item")
        channel = event.get("channel") or (item.get("channel") if isinstance(item, dict) else None)
        return f"event {_short(event.get('type'))} {_short(body.get('event_id'))} in {_short(channel)}"
    if event:
        return f"event {_short(body.get('event_id'))} that is a {type(event).__name__}, not an object"
    if body.get("command"):
        return f"command {_short(body.get('command'))} in {_short(body.get('channel_id'))}"
    return f"request of type {_short(body.get('type'))}"


def _short(value: object, most: int = LOGGED_CHARS) -> str:
    """A payload value for the log: a string or number cut to ``most`` characters, else its type."""
    if value is None or isinstance(value, (str, int, float)):
        text = str(value)
        return text if len(text) <= most else f"{text[: most - 1]}… ({len(text)} chars)"
    return f"a {type(value).__name__}"
