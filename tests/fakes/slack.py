"""A fake Slack at the network boundary: the Web API on 127.0.0.1, and signed event delivery.

The Web API side records every call, keeps message and reaction state, can answer
429 (with Retry-After), an error, an HTTP error status (500) or drop the connection,
and, like Slack, sends the bot's own
``reactions.add`` back to the app as ``reaction_added`` events. ``reactions.get``
reads a message's reactions back (cut to ``reaction_users_shown`` people per emoji,
with the full ``count``, as Slack does on busy messages); file uploads take Slack's
three steps (``files.getUploadURLExternal``, a POST of the bytes to the returned URL,
which points back at the fake, and ``files.completeUploadExternal``). The people side
(`mention`, `dm`, `reply`, `react`, `slash`) stores what a person did and delivers
the events Slack would send: signed with the signing secret to the app's URL, or,
once the app has connected in Socket Mode, as envelopes over the websocket.

**Scopes and membership, as Slack enforces them.** The app is installed with the bot
scopes and event subscriptions of ``bot/adapters/slack/manifest.yml`` (or those given).
A Web API method whose scope it lacks answers ``missing_scope`` (with ``needed``), from
a table written here from Slack's method reference (:data:`METHOD_SCOPES`; history and
listing methods by the conversation's kind); an event it is not subscribed to, or lacks
the scope of, is not delivered. The bot is a member of the conversations people talk to
it in, except those in :attr:`FakeSlack.outside`: posting there answers ``not_in_channel``
(unless ``chat:write.public`` is granted, in a public channel), reading history too.
:meth:`FakeSlack.limit_history` applies the limits of an app distributed outside the
Marketplace to ``conversations.history`` and ``conversations.replies``: one request per
window per method (429 with Retry-After), at most 15 messages a page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T0001"
APP = "A0001"
MANIFEST = Path(__file__).resolve().parents[2] / "bot" / "adapters" / "slack" / "manifest.yml"

# The bot scope each Web API method needs (Slack's method reference); () for none.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "apps.connections.open": (),  # an app-level token with connections:write, not a bot scope
    "chat.postMessage": ("chat:write",),
    "reactions.add": ("reactions:write",),
    "reactions.get": ("reactions:read",),
    "users.info": ("users:read",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
}
# Methods whose scope depends on the kind of conversation.
HISTORY_SCOPES = {
    "public_channel": "channels:history",
    "private_channel": "groups:history",
    "im": "im:history",
    "mpim": "mpim:history",
}
READ_SCOPES = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "im": "im:read",
    "mpim": "mpim:read",
}
# The scope each event subscription needs.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "reaction_added": "reactions:read",
    "reaction_removed": "reactions:read",
}
_MESSAGE_EVENTS = {"channel": "message.channels", "group": "message.groups", "im": "message.im", "mpim": "message.mpim"}
_CHANNEL_TYPES = {"public_channel": "channel", "private_channel": "group", "im": "im", "mpim": "mpim"}
DISTRIBUTED_PAGE = 15  # most messages a page for an app distributed outside the Marketplace


def installed_from_manifest(path: Path = MANIFEST) -> tuple[frozenset[str], frozenset[str]]:
    """(bot scopes, bot events) an app created from the manifest at ``path`` is installed with."""
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    scopes = frozenset(manifest["oauth_config"]["scopes"]["bot"])
    events = frozenset(manifest["settings"]["event_subscriptions"]["bot_events"])
    return scopes, events


def signature_headers(body: str, *, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signature: HMAC-SHA256 over ``v0:{timestamp}:{body}``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    status: int
    body: str
    envelope: dict[str, Any]
    elapsed_s: float


class NoAck(AssertionError):
    """The app sent no Socket Mode ack for an envelope: Slack would send it again."""

    def __init__(self, kind: str, payload: dict[str, Any], timeout: float) -> None:
        super().__init__(f"no ack for {kind} envelope within {timeout} s")
        self.payload = payload  # the envelope to send again


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)  # name -> users
    files: list[Upload] = field(default_factory=list)


@dataclass
class Upload:
    """A file the app uploaded: announced, then its bytes, then shared (or not)."""

    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None


class FakeSlack:
    def __init__(
        self,
        *,
        signing_secret: str,
        bots: frozenset[str] = frozenset(),
        scopes: frozenset[str] | None = None,
        events: frozenset[str] | None = None,
    ) -> None:
        self.signing_secret = signing_secret
        manifest_scopes, manifest_events = installed_from_manifest()
        self.scopes = manifest_scopes if scopes is None else scopes  # the installed bot scopes
        self.bot_events = manifest_events if events is None else events  # the event subscriptions
        self.outside: set[str] = set()  # conversations the bot is not a member of
        self.kinds: dict[str, str] = {}  # conversation id -> kind, where its id's first letter misleads
        self.undelivered: list[dict[str, Any]] = []  # events Slack would not send to this app
        self._history_limit: tuple[int, float] | None = None  # (page size, window s)
        self._history_calls: dict[str, float] = {}  # method -> when the window opened
        self.bots = set(bots) | {BOT_USER}
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # what the app sent to response_url
        self.messages: dict[tuple[str, str], Message] = {}
        self.events_url: str | None = None  # the app's /slack/events, set by the test
        self.echoes: list[Delivery] = []  # the bot's own reactions sent back
        self.deliveries: list[Delivery] = []  # every event delivered, with the app's answer, in order
        self._failures: dict[str, list[tuple[int, dict[str, Any] | None, dict[str, str]]]] = {}
        self._drops: dict[str, int] = {}  # method -> connections still to drop
        self._clock = itertools.count(1)
        self._last_second = 0
        self._event_ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self.sockets: list[web.WebSocketResponse] = []  # Socket Mode connections from the app
        self.socket_acks: dict[str, dict[str, Any]] = {}  # envelope id -> the app's ack
        self.socket_ack_timeout_s = 10.0  # an envelope not acked by then raises NoAck
        self.uploads: dict[str, Upload] = {}  # file id -> the upload
        self.reaction_users_shown: int | None = None  # reactions.get cuts user lists to this
        self._file_ids = itertools.count(1)
        self._held: dict[str, asyncio.Event] = {}  # method -> answered once the event is set

    # --- lifecycle ------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeSlack]:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk sends some methods (users.info) as GET
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link", self._socket)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession()
        try:
            yield self
        finally:
            await self.settle()
            await self._session.close()
            await runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @property
    def busy(self) -> bool:
        """Whether the fake is still sending an event on its own (an echo of the bot's reaction)."""
        return bool(self._tasks)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every event the fake is sending on its own has been delivered."""
        deadline = time.monotonic() + timeout
        while self._tasks:  # an echo may start another one
            await asyncio.wait_for(asyncio.gather(*list(self._tasks)), max(0.1, deadline - time.monotonic()))

    # --- scripted failures ----------------------------------------------------------
    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 0) -> None:
        for _ in range(times):
            self._failures.setdefault(method, []).append(
                (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
            )

    def hold(self, method: str) -> asyncio.Event:
        """Answer ``method`` (with the state as it was when called) only once the returned event is set."""
        gate = self._held[method] = asyncio.Event()
        return gate

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        for _ in range(times):
            self._failures.setdefault(method, []).append((200, {"ok": False, "error": error}, {}))

    def fail_status(self, method: str, status: int = 500, *, times: int = 1) -> None:
        """Answer ``method`` with an HTTP error status and a body that is not JSON (a proxy's error page)."""
        for _ in range(times):
            self._failures.setdefault(method, []).append((status, None, {}))

    def limit_history(self, *, window_s: float = 60.0, page: int = DISTRIBUTED_PAGE) -> None:
        """Slack's limits for an app distributed outside the Marketplace: one conversations.history
        and one conversations.replies request per ``window_s`` (60 s: "1 per minute"), ``page``
        messages a page at most. Retry-After says how long is left of the window (whole seconds)."""
        self._history_limit = (page, window_s)

    def kind(self, channel: str) -> str:
        """public_channel, private_channel, im or mpim."""
        if channel in self.kinds:
            return self.kinds[channel]
        return {"D": "im", "G": "private_channel"}.get(channel[:1], "public_channel")

    def disconnect(self, method: str, *, times: int = 1) -> None:
        """Drop the connection of the next ``times`` calls to ``method`` before answering."""
        self._drops[method] = self._drops.get(method, 0) + times

    # --- what the bot did -----------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def bot_messages(self, channel: str | None = None) -> list[Message]:
        return [
            message
            for message in self.messages.values()
            if message.user == BOT_USER and (channel is None or message.channel == channel)
        ]

    def answers_in_thread(self, channel: str, thread_ts: str) -> list[Message]:
        return [message for message in self.bot_messages(channel) if message.thread_ts == thread_ts]

    # --- the Web API ----------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(dict(await request.post()))
        self.calls.append(Call(method, args))
        if self._drops.get(method):
            self._drops[method] -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if self._failures.get(method):
            status, payload, headers = self._failures[method].pop(0)
            if payload is None:
                return web.Response(status=status, text="<html>Server Error</html>", content_type="text/html")
            return web.json_response(payload, status=status, headers=headers)
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        refused = self._refused(method, args)
        if refused is not None:
            return refused
        payload = handler(args)
        if method in self._held:
            await self._held[method].wait()
        return web.json_response(payload)

    def _needed_scopes(self, method: str, args: dict[str, Any]) -> tuple[str, ...]:
        if method in ("conversations.history", "conversations.replies"):
            return (HISTORY_SCOPES[self.kind(str(args.get("channel", "")))],)
        if method == "users.conversations":
            kinds = str(args.get("types") or "public_channel").split(",")
            return tuple(READ_SCOPES[kind] for kind in kinds if kind in READ_SCOPES)
        return METHOD_SCOPES[method]

    def _refused(self, method: str, args: dict[str, Any]) -> web.Response | None:
        """Slack's answer to a call the installed app may not make; None when it may."""
        missing = [scope for scope in self._needed_scopes(method, args) if scope not in self.scopes]
        if missing:
            return web.json_response(
                {"ok": False, "error": "missing_scope", "needed": ",".join(missing), "provided": ",".join(self.scopes)}
            )
        channel = str(args.get("channel", ""))
        if channel in self.outside and self.kind(channel) not in ("im", "mpim"):
            public = self.kind(channel) == "public_channel" and "chat:write.public" in self.scopes
            if method in ("conversations.history", "conversations.replies") or (
                method == "chat.postMessage" and not public
            ):
                return web.json_response({"ok": False, "error": "not_in_channel"})
        if method in ("conversations.history", "conversations.replies") and self._history_limit is not None:
            _, window = self._history_limit
            now = time.monotonic()
            opened = self._history_calls.get(method)
            if opened is not None and now - opened < window:
                wait = max(1, math.ceil(window - (now - opened)))
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(wait)}
                )
            self._history_calls[method] = now
        return None

    def _api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "user": "thumbtune",
            "team": "Test",
            "team_id": TEAM,
            "url": "https://test.slack.invalid/",
        }

    def _api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("text"):
            return {"ok": False, "error": "invalid_arguments"}
        message = self._store(
            channel=args["channel"], user=BOT_USER, text=args["text"], thread_ts=args.get("thread_ts")
        )
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "message": {
                "type": "message",
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": message.text,
                "ts": message.ts,
                "thread_ts": message.thread_ts,
            },
        }

    def _api_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((args.get("channel", ""), args.get("timestamp", "")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        users = message.reactions.setdefault(args["name"], [])
        if BOT_USER in users:
            return {"ok": False, "error": "already_reacted"}
        users.append(BOT_USER)
        # Slack sends the bot its own reaction as an event; the app must not count it.
        event = self._reaction_event("reaction_added", message, BOT_USER, args["name"])
        self._background(self._echo(event))
        return {"ok": True}

    def _api_reactions_get(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((args.get("channel", ""), args.get("timestamp", "")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        payload: dict[str, Any] = {"type": "message", "user": message.user, "text": message.text, "ts": message.ts}
        shown = [
            {"name": name, "users": users[: self.reaction_users_shown], "count": len(users)}
            for name, users in message.reactions.items()
            if users
        ]
        if shown:
            payload["reactions"] = shown
        return {"ok": True, "type": "message", "channel": message.channel, "message": payload}

    def _api_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._file_ids):06d}"
        self.uploads[file_id] = Upload(id=file_id, filename=args["filename"], length=int(args["length"]))
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.base_url}/upload/{file_id}"}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        data = await request.read()
        if upload is None or upload.data is not None or len(data) != upload.length:
            return web.Response(status=400, text="bad upload")
        upload.data = data
        return web.Response(text=f"OK - {len(data)}")

    def _api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            wanted = json.loads(args.get("files", ""))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        uploads = [self.uploads.get(item.get("id", "")) for item in wanted]
        if not uploads or any(upload is None or upload.data is None for upload in uploads):
            return {"ok": False, "error": "file_not_found"}
        channel, thread_ts = args.get("channel_id"), args.get("thread_ts")
        for upload, item in zip(uploads, wanted, strict=True):
            upload.title, upload.channel, upload.thread_ts = item.get("title"), channel, thread_ts
        if channel:  # shared: Slack posts a message carrying the files (and the comment)
            message = self._store(
                channel=channel, user=BOT_USER, text=args.get("initial_comment", ""), thread_ts=thread_ts
            )
            message.files.extend(uploads)
        return {
            "ok": True,
            "files": [{"id": upload.id, "title": upload.title, "name": upload.filename} for upload in uploads],
        }

    # The bot is a member of every conversation with a message in it, but those outside.
    def _api_users_conversations(self, args: dict[str, Any]) -> dict[str, Any]:
        kinds = str(args.get("types") or "public_channel").split(",")
        channels = sorted({message.channel for message in self.messages.values()} - self.outside)
        shown = [
            {"id": channel, "is_im": self.kind(channel) == "im", "is_mpim": self.kind(channel) == "mpim"}
            for channel in channels
            if self.kind(channel) in kinds
        ]
        return self._page(args, "channels", shown)

    def _api_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, oldest = args.get("channel", ""), float(args.get("oldest") or 0)
        tops = [
            message
            for message in self.messages.values()
            if message.channel == channel and message.thread_ts in (None, message.ts) and float(message.ts) > oldest
        ]
        tops.sort(key=lambda message: float(message.ts), reverse=True)  # newest first, as Slack
        shown = []
        for message in tops:
            payload = self._history_payload(message)
            replies = self._replies_to(message)
            if replies:
                payload.update(thread_ts=message.ts, reply_count=len(replies), latest_reply=replies[-1].ts)
            shown.append(payload)
        return self._page(args, "messages", shown, most=self._history_page())

    def _api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        parent = self.messages.get((args.get("channel", ""), args.get("ts", "")))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        shown = [self._history_payload(message) for message in [parent, *self._replies_to(parent)]]
        return self._page(args, "messages", shown, most=self._history_page())

    def _history_page(self) -> int | None:
        return None if self._history_limit is None else self._history_limit[0]

    def _replies_to(self, parent: Message) -> list[Message]:
        replies = [
            message
            for message in self.messages.values()
            if message.channel == parent.channel and message.thread_ts == parent.ts and message.ts != parent.ts
        ]
        return sorted(replies, key=lambda message: float(message.ts))

    def _history_payload(self, message: Message) -> dict[str, Any]:
        payload: dict[str, Any] = {"type": "message", "user": message.user, "text": message.text, "ts": message.ts}
        if message.thread_ts:
            payload["thread_ts"] = message.thread_ts
        if message.user in self.bots:
            payload["bot_id"] = BOT_ID if message.user == BOT_USER else f"B{message.user}"
        return payload

    @staticmethod
    def _page(args: dict[str, Any], name: str, items: list[dict[str, Any]], most: int | None = None) -> dict[str, Any]:
        """One page of ``items`` (``limit`` of them, at most ``most``, from ``cursor``), with the next
        cursor if there are more."""
        start, limit = int(args.get("cursor") or 0), int(args.get("limit") or 100)
        limit = limit if most is None else min(limit, most)
        following = start + limit if start + limit < len(items) else None
        return {
            "ok": True,
            name: items[start : start + limit],
            "response_metadata": {"next_cursor": str(following) if following else ""},
        }

    def _api_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.base_url.replace("http://", "ws://") + "/link"}

    def _api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = args.get("user", "")
        return {"ok": True, "user": {"id": user, "name": user.lower(), "is_bot": user in self.bots}}

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json({"type": "hello", "num_connections": len(self.sockets)})
        try:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    ack = json.loads(message.data)
                    self.socket_acks[ack.get("envelope_id", "")] = ack
        finally:
            self.sockets.remove(socket)
        return socket

    async def _echo(self, event: dict[str, Any]) -> None:
        self.echoes.append(await self.deliver(event))

    # --- people and Slack's event delivery ------------------------------------------
    async def mention(self, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> Message:
        """A person writes ``<@bot> text`` in a channel: Slack sends app_mention and message."""
        message = self._store(channel=channel, user=user, text=f"<@{BOT_USER}> {text}", thread_ts=thread_ts)
        payload = self._message_payload(message, channel_type=self._channel_type(channel))
        await self.deliver({**payload, "type": "app_mention"})
        await self.deliver(payload)
        return message

    async def dm(self, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> Message:
        message = self._store(channel=channel, user=user, text=text, thread_ts=thread_ts)
        await self.deliver(self._message_payload(message, channel_type="im"))
        return message

    async def group_dm(self, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> Message:
        """A person writes in a group DM (mpim) the bot is in; ``<@UBOT>`` in ``text`` mentions it."""
        self.kinds[channel] = "mpim"
        message = self._store(channel=channel, user=user, text=text, thread_ts=thread_ts)
        payload = self._message_payload(message, channel_type="mpim")
        if f"<@{BOT_USER}>" in text:
            await self.deliver({**payload, "type": "app_mention"})
        await self.deliver(payload)
        return message

    async def reply(self, *, channel: str, user: str, text: str, thread_ts: str) -> Message:
        """A person replies in a thread without mentioning the bot (message.channels)."""
        message = self._store(channel=channel, user=user, text=text, thread_ts=thread_ts)
        await self.deliver(self._message_payload(message, channel_type=self._channel_type(channel)))
        return message

    async def react(self, *, user: str, message: Message, name: str, remove: bool = False) -> Delivery:
        self.react_while_away(user=user, message=message, name=name, remove=remove)
        kind = "reaction_removed" if remove else "reaction_added"
        return await self.deliver(self._reaction_event(kind, message, user, name))

    def post_while_away(
        self, *, channel: str, user: str, text: str, ago_s: float = 60.0, thread_ts: str | None = None
    ) -> Message:
        """A person writes while the app is down (``text`` as typed: mention the bot with
        ``<@UBOT>``): Slack keeps the message, ``ago_s`` seconds old, and no event reaches the app."""
        return self._store(channel=channel, user=user, text=text, thread_ts=thread_ts, at=time.time() - ago_s)

    def react_while_away(self, *, user: str, message: Message, name: str, remove: bool = False) -> None:
        """A reaction changes while the app is down: Slack's state changes, no event reaches the app."""
        users = message.reactions.setdefault(name, [])
        if remove:
            users.remove(user)
        else:
            users.append(user)

    async def slash(self, *, command: str, text: str, channel: str, user: str) -> Delivery:
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": command,
            "text": text,
            "api_app_id": APP,
            "response_url": f"{self.base_url}/respond/{next(self._event_ids)}",
            "trigger_id": f"trigger.{next(self._event_ids)}",
        }
        if self.sockets:
            return await self._send_socket("slash_commands", form, accepts_response_payload=True)
        body = urllib.parse.urlencode(form)
        return await self._post(body, form, content_type="application/x-www-form-urlencoded")

    def envelope(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": APP,
            "type": "event_callback",
            "event": event,
            "event_id": event_id or f"Ev{next(self._event_ids):06d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    async def deliver(self, event: dict[str, Any], *, event_id: str | None = None) -> Delivery:
        """Send an event as Slack would; one the app is not subscribed to (or lacks the scope of)
        is not sent: it is kept in :attr:`undelivered` and the Delivery has status 0."""
        subscription = _subscription(event)
        if subscription is not None and (
            subscription not in self.bot_events or EVENT_SCOPES[subscription] not in self.scopes
        ):
            self.undelivered.append(event)
            return Delivery(0, "not subscribed", self.envelope(event, event_id=event_id), 0.0)
        return await self.redeliver(self.envelope(event, event_id=event_id))

    async def redeliver(
        self,
        envelope: dict[str, Any],
        *,
        retry_num: int | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> Delivery:
        """Send an event envelope as Slack does (a retry carries X-Slack-Retry-Num)."""
        if self.sockets:
            delivery = await self._send_socket("events_api", envelope, retry_attempt=retry_num or 0)
        else:
            headers = {}
            if retry_num is not None:
                headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
            delivery = await self._post(
                json.dumps(envelope),
                envelope,
                content_type="application/json",
                headers=headers,
                secret=secret,
                timestamp=timestamp,
            )
        self.deliveries.append(delivery)
        return delivery

    async def _post(
        self,
        body: str,
        envelope: dict[str, Any],
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> Delivery:
        url = self.target_url()
        assert self._session is not None and url is not None, "start the fake and set events_url"
        all_headers = {
            "Content-Type": content_type,
            **signature_headers(body, secret=secret or self.signing_secret, timestamp=timestamp),
            **(headers or {}),
        }
        started = time.monotonic()
        async with self._session.post(url, data=body.encode(), headers=all_headers) as response:
            text = await response.text()
        return Delivery(response.status, text, envelope, time.monotonic() - started)

    def target_url(self) -> str | None:
        """Where the next HTTP delivery goes: the app's URL (a test with several app processes
        overrides it, as a load balancer in front of them would)."""
        return self.events_url

    async def _send_socket(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        accepts_response_payload: bool = False,
    ) -> Delivery:
        """Socket Mode: send an envelope over the app's websocket and wait for its ack
        (:class:`NoAck` after :attr:`socket_ack_timeout_s`)."""
        timeout = self.socket_ack_timeout_s
        envelope_id = str(uuid.uuid4())
        started = time.monotonic()
        await self.sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": accepts_response_payload,
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        while envelope_id not in self.socket_acks:
            if time.monotonic() - started > timeout:
                raise NoAck(kind, payload, timeout)
            await asyncio.sleep(0.01)
        ack = self.socket_acks[envelope_id]
        return Delivery(200, json.dumps(ack.get("payload") or {}), payload, time.monotonic() - started)

    # --- state helpers --------------------------------------------------------------
    def _store(self, *, channel: str, user: str, text: str, thread_ts: str | None, at: float | None = None) -> Message:
        tick = next(self._clock)
        # Slack's ts is the time it was posted: later messages (the bot's answers) come after
        # the ones written while the bot was away; the others stay in 2023, as before.
        second = max(1_700_000_000 + tick, self._last_second + 1) if at is None else int(at)
        self._last_second = max(self._last_second, second)
        ts = f"{second}.{tick:06d}"
        message = Message(channel=channel, ts=ts, user=user, text=text, thread_ts=thread_ts)
        self.messages[(channel, ts)] = message
        return message

    def _message_payload(self, message: Message, *, channel_type: str) -> dict[str, Any]:
        payload = {
            "type": "message",
            "channel": message.channel,
            "user": message.user,
            "text": message.text,
            "ts": message.ts,
            "event_ts": message.ts,
            "channel_type": channel_type,
        }
        if message.thread_ts:
            payload["thread_ts"] = message.thread_ts
        return payload

    def _channel_type(self, channel: str) -> str:
        return _CHANNEL_TYPES[self.kind(channel)]

    def _reaction_event(self, kind: str, message: Message, user: str, name: str) -> dict[str, Any]:
        return {
            "type": kind,
            "user": user,
            "reaction": name,
            "item_user": message.user,
            "item": {"type": "message", "channel": message.channel, "ts": message.ts},
            "event_ts": f"{time.time():.6f}",
        }

    def _background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _subscription(event: dict[str, Any]) -> str | None:
    """The event subscription an event arrives under (``message.im``); None when it cannot be told."""
    kind = event.get("type")
    if kind == "message":
        channel_type = event.get("channel_type")
        return _MESSAGE_EVENTS.get(channel_type) if isinstance(channel_type, str) else None
    return kind if isinstance(kind, str) and kind in EVENT_SCOPES else None
