"""A local fake Discord: the REST API and the gateway websocket the real discord.py talks to.

Point the unmodified library at it with ``discord.http.Route.BASE = fake.api_base`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``.

Like the real gateway it echoes the bot's own messages and reactions back as events,
numbers every dispatch, and on RESUME replays what the client missed while disconnected.
**Shards**: an IDENTIFY with ``shard: [id, count]`` opens that shard's session (one per
shard id; without the field, the one unsharded session is shard 0 of 1). Like Discord, a
session gets the servers of its shard (``(guild_id >> 22) % count``) in READY and their
GUILD_CREATEs, and the events of those servers; DMs go to shard 0 only. The bot is in
:attr:`FakeDiscord.guild_id` (a text channel and a thread) and in each server of
:meth:`FakeDiscord.add_guild` (one text channel each), with the same roles in all.
Test code plays the people: :meth:`FakeDiscord.say`, :meth:`react`, :meth:`unreact`,
:meth:`ask` (a slash command). Messages and their reactions can be read back over REST
(what the bot does to catch up after downtime), and a message posted with files (a
multipart upload) keeps the files' bytes in :attr:`Call.files`. A channel's history reads
newest first (``GET /channels/{c}/messages?before=&after=&limit=``); ids are snowflakes,
so discord.py reads a message's time from its id, and ``say(..., at=)`` backdates one.
:meth:`FakeDiscord.fail_route` makes any endpoint answer an error status (a real Discord
has endpoints a fake may forget) and :meth:`FakeDiscord.slow_route` makes one answer late.

**Permissions, as Discord enforces them.** The bot has exactly what its invite link
granted (:meth:`FakeDiscord.invite`: a managed role with the link's ``permissions``), in a
server whose ``@everyone`` may do nothing (:attr:`FakeDiscord.everyone_permissions`), with
per-channel overwrites (:attr:`FakeDiscord.overwrites`) that its threads inherit. A REST
call the bot may not make is refused as Discord refuses it: 403 with code 50001 (Missing
Access: cannot see the channel) or 50013 (Missing Permissions). Posting needs Send Messages
in a channel and Send Messages in Threads in a thread (threads do not inherit the former),
a file needs Attach Files, a reply Read Message History; DMs need none. The bits are
written here from Discord's documentation, not taken from discord.py.

**Message content, as Discord shows it without the privileged intent.** A server message
that does not mention the bot reaches it with empty ``content`` (and no attachments), unless
:attr:`FakeDiscord.message_content_intent`. A reply pings (mentions) the replied-to author,
except when that message is an interaction's response (discord-api-docs issue 5395): a reply
to an ``/ask`` answer therefore arrives empty.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import WSMsgType, web

TOKEN = "fake-bot-token"
BAD_TOKEN = "rejected-token"
SESSION_ID = "fake-session"

DISCORD_EPOCH_MS = 1_420_070_400_000  # the first millisecond of 2015, where snowflakes start

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
# What a channel's permissions can say at all (Discord's "all channel" set is wider; these suffice here).
_NEED_TO_SEND = SEND_TTS_MESSAGES | MENTION_EVERYONE | EMBED_LINKS | ATTACH_FILES
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013

# Discord's gateway close codes the tests use.
CLOSE_DISALLOWED_INTENTS = 4014
CLOSE_UNKNOWN_ERROR = 4000


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    bot: bool = False

    def user(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name,
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class Call:
    method: str
    path: str
    body: Any
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, bytes) of a multipart post


@dataclass
class Session:
    """One gateway session: shard ``shard`` of ``count``, with its numbered events."""

    shard: int
    count: int
    ws: web.WebSocketResponse | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, by sequence number - 1
    resumable: bool = True  # False: a RESUME gets INVALID_SESSION

    @property
    def sharded(self) -> bool:
        return self.count > 1 or self.shard != 0

    @property
    def session_id(self) -> str:
        return f"{SESSION_ID}-{self.shard}-of-{self.count}" if self.sharded else SESSION_ID

    def receives(self, guild_id: int | None) -> bool:
        """Whether a server's events (None: a DM's) come on this session, as Discord routes them."""
        return self.shard == (0 if guild_id is None else (guild_id >> 22) % self.count)


@dataclass
class FakeDiscord:
    host: str = "127.0.0.1"
    bot: Person = Person(9000, "thumbtune", bot=True)
    guild_id: int = 100
    channel_id: int = 200  # a text channel in the guild
    thread_id: int = 300  # a public thread under that channel
    dm_channel_id: int = 400  # the DM between alice and the bot
    bot_role_id: int = 9100  # the role Discord makes for the bot when it is invited
    bot_permissions: int = 0  # what the invite granted (invite())
    everyone_permissions: int = 0  # what @everyone may do in this server
    # channel id -> Discord permission overwrites ({"id", "type": 0 role / 1 member, "allow", "deny"})
    overwrites: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    message_content_intent: bool = False  # the privileged intent: server messages keep their text
    close_on_identify: int | None = None  # close code to refuse IDENTIFY with
    fail_next_post: set[int] = field(default_factory=set)  # channels whose next POST gets a 400
    fail_next_follow_up: bool = False  # the next interaction follow-up gets a 403
    rate_limit_next_reaction: bool = False  # the next reaction PUT gets a 429
    deleted: set[int] = field(default_factory=set)  # messages that GET answers 404 for
    failing: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, path pattern) -> status
    slow: dict[tuple[str, str], float] = field(default_factory=dict)  # (method, path pattern) -> seconds

    calls: list[Call] = field(default_factory=list)
    commands: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)  # guild id (None: global) -> /ask...
    identifies: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    reactions: set[tuple[int, int, str]] = field(default_factory=set)  # (message, user, emoji)

    def __post_init__(self) -> None:
        self._serial = itertools.count(1)
        self._sessions: dict[int, Session] = {}  # shard id -> its gateway session
        self._guilds: dict[int, int] = {}  # more servers: guild id -> its text channel
        self._interactions: dict[str, dict[str, Any]] = {}  # token -> INTERACTION_CREATE data
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.resumed = asyncio.Event()
        self._people: dict[int, Person] = {self.bot.id: self.bot}

    # --- lifetime -------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for session in self._sessions.values():
            if session.ws is not None:
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    # --- what people do -------------------------------------------------------------
    async def say(
        self,
        person: Person,
        content: str,
        *,
        channel_id: int | None = None,
        mention_bot: bool = False,
        reply_to: int | None = None,
        at: float | None = None,
    ) -> int:
        """A person posts a message (``at``: posted then, a Unix time); a reply pings the
        replied-to author, as Discord's default."""
        channel_id = self.channel_id if channel_id is None else channel_id
        mentions = [self.bot.user()] if mention_bot else []
        if mention_bot:
            content = f"<@{self.bot.id}> {content}"
        if reply_to is not None:
            replied = self.messages[reply_to]
            author = replied["author"]
            # Replying to an interaction's response pings no one (discord-api-docs issue 5395).
            if author["id"] not in {user["id"] for user in mentions} and "interaction_metadata" not in replied:
                mentions.append(author)
        message = self._new_message(channel_id, person.user(), content, mentions=mentions, reply_to=reply_to, at=at)
        await self.dispatch("MESSAGE_CREATE", self._as_the_bot_sees(message))
        return int(message["id"])

    def _as_the_bot_sees(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the gateway and REST show it to the bot: without the message-content intent, a
        server message that does not mention the bot has no content (nor attachments, embeds)."""
        if (
            self.message_content_intent
            or not self._in_guild(int(message["channel_id"]))
            or message["author"]["id"] == str(self.bot.id)
            or str(self.bot.id) in {user["id"] for user in message["mentions"]}
        ):
            return message
        return message | {"content": "", "attachments": [], "embeds": []}

    async def react(self, person: Person, message_id: int, emoji: str, *, custom_id: int | None = None) -> None:
        await self._reaction("MESSAGE_REACTION_ADD", person, message_id, emoji, custom_id)

    async def unreact(self, person: Person, message_id: int, emoji: str) -> None:
        await self._reaction("MESSAGE_REACTION_REMOVE", person, message_id, emoji, None)

    async def ask(self, person: Person, prompt: str, *, channel_id: int | None = None) -> int:
        """A person runs ``/ask prompt``; returns the interaction id."""
        channel_id = self.channel_id if channel_id is None else channel_id
        interaction_id = self._new_id()
        data: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.bot.id),
            "type": 2,
            "token": f"interaction-token-{interaction_id}",
            "version": 1,
            "data": {
                "id": "1",
                "name": "ask",
                "type": 1,
                "options": [{"name": "prompt", "type": 3, "value": prompt}],
            },
            "channel_id": str(channel_id),
            "channel": self._channel(channel_id),
            "app_permissions": str(self.permissions_in(channel_id) if self._in_guild(channel_id) else 0),
            "locale": "en-US",
            "attachment_size_limit": 8_388_608,
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self._guild_of(channel_id) or self.guild_id)},
        }
        if self._in_guild(channel_id):
            data["guild_id"] = str(self._guild_of(channel_id))
            data["member"] = self._member(person) | {"permissions": "2147483647"}
            data["context"] = 0
        else:
            data["user"] = person.user()
            data["context"] = 1
        self._interactions[data["token"]] = data
        await self.dispatch("INTERACTION_CREATE", data)
        return interaction_id

    def fail_route(self, method: str, pattern: str, status: int) -> None:
        """Answer every ``method`` call whose path matches ``pattern`` (fnmatch: ``/channels/*/typing``)
        with ``status``. Use 4xx: discord.py retries a 5xx several times, seconds apart."""
        self.failing[(method, pattern)] = status

    def slow_route(self, method: str, pattern: str, seconds: float) -> None:
        """Answer every ``method`` call whose path matches ``pattern`` only after ``seconds``."""
        self.slow[(method, pattern)] = seconds

    def invite(self, url: str) -> None:
        """A server admin opens the bot's invite link: its role gets exactly the link's ``permissions``."""
        query = parse_qs(urlsplit(url).query)
        self.bot_permissions = int(query.get("permissions", ["0"])[0])

    def add_guild(self, guild_id: int, channel_id: int) -> None:
        """The bot is in one more server, with one text channel (its shard: ``(guild_id >> 22) % count``)."""
        self._guilds[guild_id] = channel_id

    def deny(self, channel_id: int, permissions: int) -> None:
        """A channel overwrite that takes ``permissions`` away from the bot's role there (and in its threads)."""
        self.overwrites.setdefault(channel_id, []).append(
            {"id": str(self.bot_role_id), "type": 0, "allow": "0", "deny": str(permissions)}
        )

    def permissions_in(self, channel_id: int) -> int:
        """The bot's permissions in a server channel or thread, resolved as Discord does."""
        base = self.everyone_permissions | self.bot_permissions
        if base & ADMINISTRATOR:
            return (1 << 53) - 1
        is_thread = channel_id == self.thread_id
        parent = self.channel_id if is_thread else channel_id
        overwrites = self.overwrites.get(parent, [])  # a thread has none of its own: its parent's apply
        for wanted in ({str(self._guild_of(channel_id))}, {str(self.bot_role_id)}, {str(self.bot.id)}):
            allow = deny = 0
            for overwrite in overwrites:
                if overwrite["id"] in wanted:
                    allow |= int(overwrite["allow"])
                    deny |= int(overwrite["deny"])
            base = (base & ~deny) | allow
        if not base & SEND_MESSAGES:  # implicit: no sending, no files (nor embeds, TTS, @everyone)
            base &= ~_NEED_TO_SEND
        if is_thread and not base & SEND_MESSAGES_IN_THREADS:
            base &= ~_NEED_TO_SEND
        if not base & VIEW_CHANNEL:
            return 0
        return base

    def _refused(self, channel_id: int, *needed: int) -> web.Response | None:
        """Discord's 403 when the bot lacks one of ``needed`` in a server channel; None when allowed."""
        if not self._in_guild(channel_id):
            return None  # a DM: no permissions apply
        granted = self.permissions_in(channel_id)
        if not granted & VIEW_CHANNEL:
            return _json({"message": "Missing Access", "code": MISSING_ACCESS}, status=403)
        if any(granted & bit != bit for bit in needed):
            return _json({"message": "Missing Permissions", "code": MISSING_PERMISSIONS}, status=403)
        return None

    def _new_id(self, at: float | None = None) -> int:
        """A snowflake: milliseconds since Discord's epoch, then a serial number that keeps ids unique."""
        millis = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
        return (millis << 22) | (next(self._serial) & 0x3FFFFF)

    # --- the gateway ----------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to the session of its server's shard (a DM's: shard 0); while that
        session is disconnected it waits for the RESUME replay."""
        guild = data.get("guild_id") if isinstance(data, dict) else None
        for session in list(self._sessions.values()):
            if session.receives(None if guild is None else int(guild)):
                await self._send(session, event, data)

    async def _send(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.events.append({"op": 0, "t": event, "s": len(session.events) + 1, "d": data})
        if session.ws is not None and not session.ws.closed:
            await session.ws.send_str(json.dumps(session.events[-1]))

    async def drop_connection(
        self, code: int = CLOSE_UNKNOWN_ERROR, *, shard: int | None = None, resumable: bool = True
    ) -> None:
        """Close the gateway sockets (of one ``shard``, or all) like a network blip; the client is
        expected to RESUME. Not ``resumable``: Discord answers the RESUME with INVALID_SESSION
        (the client identifies again, and the events meanwhile are lost)."""
        self.resumed.clear()
        for session in self._sessions.values():
            if shard is not None and session.shard != shard:
                continue
            session.resumable = resumable
            ws, session.ws = session.ws, None
            if ws is not None:
                await ws.close(code=code)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41_250}, "s": None, "t": None})
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(message.data)
            op, data = payload["op"], payload.get("d")
            if op == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                self.identifies.append(data)
                if self.close_on_identify is not None:
                    await ws.close(code=self.close_on_identify)
                    break
                shard, count = data.get("shard") or (0, 1)
                session = self._sessions[shard] = Session(shard, count, ws=ws)
                await self._send(session, "READY", self._ready(session))
                for guild_id in self._guilds_of(session):
                    await self._send(session, "GUILD_CREATE", self._guild(guild_id))
            elif op == 6:
                self.resumes.append(data)
                resumed = next(s for s in self._sessions.values() if s.session_id == data["session_id"])
                if not resumed.resumable:
                    await ws.send_json({"op": 9, "d": False, "s": None, "t": None})  # INVALID_SESSION
                    continue
                await self._replay(ws, resumed, after=int(data["seq"] or 0))
        return ws

    async def _replay(self, ws: web.WebSocketResponse, session: Session, *, after: int) -> None:
        index = after
        while index < len(session.events):  # dispatches that arrive meanwhile are appended
            await ws.send_str(json.dumps(session.events[index]))
            index += 1
        session.ws = ws  # no await since the loop ended: nothing can slip in between
        await self._send(session, "RESUMED", {})
        self.resumed.set()

    def _guilds_of(self, session: Session) -> list[int]:
        return [guild_id for guild_id in [self.guild_id, *self._guilds] if session.receives(guild_id)]

    def _ready(self, session: Session) -> dict[str, Any]:
        ready = {
            "v": 10,
            "user": self.bot.user() | {"verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in self._guilds_of(session)],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.bot.id), "flags": 0},
            "private_channels": [],
        }
        if session.sharded:
            ready["shard"] = [session.shard, session.count]
        return ready

    def _guild(self, guild_id: int) -> dict[str, Any]:
        now = _now()
        main = guild_id == self.guild_id
        return {
            "id": str(guild_id),
            "name": "Test server",
            "unavailable": False,
            "owner_id": "1",
            "member_count": 3,
            "large": False,
            "joined_at": now,
            "roles": [
                {
                    "id": str(guild_id),
                    "name": "@everyone",
                    "permissions": str(self.everyone_permissions),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                },
                {
                    "id": str(self.bot_role_id),
                    "name": self.bot.name,
                    "permissions": str(self.bot_permissions),
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": True,
                    "mentionable": False,
                    "tags": {"bot_id": str(self.bot.id)},
                },
            ],
            "members": [self._member(self.bot) | {"roles": [str(self.bot_role_id)]}],
            "channels": [self._channel(self.channel_id if main else self._guilds[guild_id])],
            "threads": [self._channel(self.thread_id)] if main else [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "voice_states": [],
            "presences": [],
        }

    # --- the REST API ---------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body, files = await _read_body(request)
        self.calls.append(Call(request.method, path, body, files))
        scripted = await self._scripted(request, path)
        if scripted is not None:
            return scripted
        parts = path.strip("/").split("/")
        method = request.method

        if method == "GET" and path == "/users/@me":
            return _json(self.bot.user())
        if method == "GET" and path == "/oauth2/applications/@me":
            return _json(self._application())
        if parts[0] == "applications" and "commands" in parts:
            return self._commands_call(method, parts, body)
        if parts[0] == "channels" and len(parts) >= 2:
            return await self._channel_call(method, parts, body, files, request.query)
        if method == "POST" and parts[0] == "interactions":  # /interactions/{id}/{token}/callback
            return _json(
                {
                    "interaction": {"id": parts[1], "type": 2, "response_message_loading": True},
                    "resource": {"type": body["type"]},
                }
            )
        if method == "POST" and parts[0] == "webhooks" and len(parts) == 3:  # an interaction follow-up
            return await self._follow_up(webhook=parts[1], token=parts[2], body=body, files=files)
        if method == "DELETE" and parts[0] == "webhooks":
            return web.Response(status=204)
        return _json({"message": f"fake Discord has no {method} {path}", "code": 0}, status=404)

    async def _scripted(self, request: web.Request, path: str) -> web.StreamResponse | None:
        """What a test scripted for this call: a refused token, a delay, a failure; None to go on."""
        if request.headers.get("Authorization") == f"Bot {BAD_TOKEN}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        for (slow_method, pattern), seconds in self.slow.items():
            if request.method == slow_method and fnmatch.fnmatchcase(path, pattern):
                await asyncio.sleep(seconds)
        for (failing_method, pattern), status in self.failing.items():
            if request.method == failing_method and fnmatch.fnmatchcase(path, pattern):
                return _json({"message": f"scripted failure {status}", "code": 0}, status=status)
        return None

    async def _follow_up(
        self, *, webhook: str, token: str, body: Any, files: list[tuple[str, bytes]]
    ) -> web.StreamResponse:
        """POST /webhooks/{application}/{token}: the bot's answer to a slash command."""
        if self.fail_next_follow_up:
            self.fail_next_follow_up = False
            return _json({"message": "Missing Permissions", "code": 50013}, status=403)
        interaction = self._interaction(token)
        channel_id = int(interaction["d"]["channel_id"])
        message = self._new_message(channel_id, self.bot.user(), body.get("content", ""), webhook=webhook, files=files)
        message["interaction_metadata"] = {
            "id": interaction["d"]["id"],
            "type": 2,
            "user": (interaction["d"].get("member") or {}).get("user") or interaction["d"].get("user"),
            "authorizing_integration_owners": {},
        }
        await self.dispatch("MESSAGE_CREATE", message)
        return _json(message)

    async def _channel_call(
        self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes]], query: Any
    ) -> web.StreamResponse:
        channel_id = int(parts[1])
        refused = self._refused(channel_id, *self._needed(method, parts, body, files, channel_id))
        if refused is not None:
            return refused
        if method == "GET" and len(parts) == 2:  # GET /channels/{c}: what fetch_channel reads
            return _json(self._channel(channel_id))
        if method == "GET" and parts[2:] == ["messages"]:  # the channel's history, newest first
            return _json(self._history(channel_id, query))
        if method == "GET" and len(parts) >= 4 and parts[2] == "messages":
            found = self._message_call(channel_id, parts, query)
            if found is not None:
                return found
        if method == "POST" and parts[2:] == ["typing"]:
            return web.Response(status=204)
        if method == "POST" and parts[2:] == ["messages"]:
            return await self._post(channel_id, body, files)
        if method == "PUT" and len(parts) == 7 and parts[2] == "messages" and parts[4:7:2] == ["reactions", "@me"]:
            return await self._react_as_the_bot(message_id=int(parts[3]), emoji=unquote(parts[5]))
        return _json({"message": "unknown channel call", "code": 0}, status=404)

    def _message_call(self, channel_id: int, parts: list[str], query: Any) -> web.StreamResponse | None:
        """GET /channels/{c}/messages/{m}[/reactions/{emoji}]; None for another GET under it."""
        message_id = int(parts[3])
        message = self.messages.get(message_id)
        if message is None or message_id in self.deleted or message["channel_id"] != str(channel_id):
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if len(parts) == 4:  # GET /channels/{c}/messages/{m}
            return _json(self._as_the_bot_sees(message) | {"reactions": self._reactions_on(message_id)})
        if len(parts) == 6 and parts[4] == "reactions":  # GET .../reactions/{emoji}?limit=&after=
            return _json(self._reacted(message_id, unquote(parts[5]), query))
        return None

    async def _post(self, channel_id: int, body: Any, files: list[tuple[str, bytes]]) -> web.StreamResponse:
        """POST /channels/{c}/messages: the bot posts (a reply, where it names a reference)."""
        if channel_id in self.fail_next_post:  # an error no handler expects
            self.fail_next_post.discard(channel_id)
            return _json({"message": "Invalid Form Body", "code": 50035}, status=400)
        reference = (body.get("message_reference") or {}).get("message_id")
        message = self._new_message(
            channel_id,
            self.bot.user(),
            body.get("content", ""),
            reply_to=int(reference) if reference else None,
            files=files,
        )
        await self.dispatch("MESSAGE_CREATE", message)  # the real gateway echoes our own posts
        return _json(message)

    async def _react_as_the_bot(self, *, message_id: int, emoji: str) -> web.StreamResponse:
        """PUT /channels/{c}/messages/{m}/reactions/{emoji}/@me, rate limited once where scripted."""
        if self.rate_limit_next_reaction:
            self.rate_limit_next_reaction = False
            limited = _json(
                {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}, status=429
            )
            limited.headers["Via"] = "1.1 google"  # discord.py treats a 429 without it as a Cloudflare ban
            return limited
        await self.react(self.bot, message_id, emoji)
        return web.Response(status=204)

    def _needed(
        self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes]], channel_id: int
    ) -> tuple[int, ...]:
        """The permissions Discord's documentation names for a channel call."""
        send = SEND_MESSAGES_IN_THREADS if channel_id == self.thread_id else SEND_MESSAGES
        if method == "GET" and len(parts) == 2:  # the channel itself
            return (VIEW_CHANNEL,)
        if method == "GET":  # a message, the history, who reacted
            return (VIEW_CHANNEL, READ_MESSAGE_HISTORY)
        if method == "POST" and parts[2:] == ["typing"]:
            return (VIEW_CHANNEL, send)
        if method == "POST" and parts[2:] == ["messages"]:
            needed = [VIEW_CHANNEL, send]
            if files:
                needed.append(ATTACH_FILES)
            if isinstance(body, dict) and body.get("message_reference"):
                needed.append(READ_MESSAGE_HISTORY)  # a reply
            return tuple(needed)
        if method == "PUT" and "reactions" in parts:
            return (VIEW_CHANNEL, READ_MESSAGE_HISTORY, ADD_REACTIONS)
        return (VIEW_CHANNEL,)

    def _commands_call(self, method: str, parts: list[str], body: Any) -> web.Response:
        """/applications/{a}[/guilds/{g}]/commands[/{id}]: bulk overwrite (PUT), list (GET), delete one."""
        guild = parts[3] if len(parts) >= 5 and parts[2] == "guilds" else None
        registered = self.commands.setdefault(guild, [])
        if method == "PUT" and parts[-1] == "commands":
            registered[:] = [self._command(command, guild) for command in body or []]
            return _json(registered)
        if method == "GET" and parts[-1] == "commands":
            return _json(registered)
        if method == "DELETE" and parts[-2] == "commands":
            registered[:] = [command for command in registered if command["id"] != parts[-1]]
            return web.Response(status=204)
        return _json({"message": "unknown commands call", "code": 0}, status=404)

    # --- payloads -------------------------------------------------------------------
    async def _reaction(self, event: str, person: Person, message_id: int, emoji: str, custom_id: int | None) -> None:
        message = self.messages[message_id]
        channel_id = int(message["channel_id"])
        data: dict[str, Any] = {
            "user_id": str(person.id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "emoji": {"id": str(custom_id) if custom_id else None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if self._in_guild(channel_id):
            data["guild_id"] = str(self._guild_of(channel_id))
        key = (message_id, person.id, emoji)
        self._people[person.id] = person
        if event == "MESSAGE_REACTION_ADD":
            self.reactions.add(key)
            data["message_author_id"] = message["author"]["id"]
            if self._in_guild(channel_id):
                data["member"] = self._member(person)
        else:
            self.reactions.discard(key)
        await self.dispatch(event, data)

    def _new_message(
        self,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        *,
        mentions: list[dict[str, Any]] | None = None,
        reply_to: int | None = None,
        webhook: str | None = None,
        files: list[tuple[str, bytes]] | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        message_id = self._new_id(at)
        attachments = [
            {
                "id": str(self._new_id()),
                "filename": name,
                "size": len(data),
                "url": f"{self.api_base}/attachments/{message_id}/{name}",
                "proxy_url": f"{self.api_base}/attachments/{message_id}/{name}",
            }
            for name, data in files or []
        ]
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now(at),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "pinned": False,
            "type": 19 if reply_to is not None else 0,
            "flags": 0,
            "components": [],
        }
        if webhook is not None:
            message["webhook_id"] = webhook
        if self._in_guild(channel_id):
            message["guild_id"] = str(self._guild_of(channel_id))
        if reply_to is not None:
            message["message_reference"] = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel_id)}
            message["referenced_message"] = self.messages[reply_to]
        self.messages[message_id] = message
        return message

    def _history(self, channel_id: int, query: Any) -> list[dict[str, Any]]:
        """GET /channels/{c}/messages: at most ``limit`` (≤ 100) messages before ``before`` or
        just after ``after``, newest first, as Discord returns them."""
        limit = min(int(query.get("limit", 50)), 100)
        ids = sorted(
            message_id
            for message_id, message in self.messages.items()
            if message["channel_id"] == str(channel_id) and message_id not in self.deleted
        )
        if "after" in query:
            chosen = [message_id for message_id in ids if message_id > int(query["after"])][:limit]
        else:
            before = int(query.get("before", 1 << 63))
            chosen = [message_id for message_id in ids if message_id < before][-limit:]
        return [
            self._as_the_bot_sees(self.messages[message_id]) | {"reactions": self._reactions_on(message_id)}
            for message_id in reversed(chosen)
        ]

    def _reactions_on(self, message_id: int) -> list[dict[str, Any]]:
        """The message's reactions as GET /channels/{c}/messages/{m} shows them (all normal ones)."""
        counts: dict[str, int] = {}
        for message, _, emoji in sorted(self.reactions):
            if message == message_id:
                counts[emoji] = counts.get(emoji, 0) + 1
        return [
            {
                "emoji": {"id": None, "name": emoji},
                "count": count,
                "count_details": {"normal": count, "burst": 0},
                "me": (message_id, self.bot.id, emoji) in self.reactions,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, count in counts.items()
        ]

    def _reacted(self, message_id: int, emoji: str, query: Any) -> list[dict[str, Any]]:
        """Who reacted with ``emoji``: by user id, at most ``limit`` after ``after``, like Discord."""
        if query.get("type", "0") != "0":
            return []  # no super reactions here
        after = int(query.get("after", 0))
        limit = min(int(query.get("limit", 25)), 100)
        ids = sorted(user for message, user, name in self.reactions if message == message_id and name == emoji)
        return [self._people[user].user() for user in ids if user > after][:limit]

    def bot_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        return [
            message
            for message in self.messages.values()
            if message["author"]["id"] == str(self.bot.id)
            and (channel_id is None or message["channel_id"] == str(channel_id))
        ]

    def answer_to(self, message_id: int) -> dict[str, Any] | None:
        """The bot's reply to a message, if it has posted one."""
        for message in self.bot_messages():
            if (message.get("message_reference") or {}).get("message_id") == str(message_id):
                return message
        return None

    def calls_to(self, method: str, prefix: str) -> list[Call]:
        return [call for call in self.calls if call.method == method and call.path.startswith(prefix)]

    def _interaction(self, token: str) -> dict[str, Any]:
        return {"t": "INTERACTION_CREATE", "d": self._interactions[token]}

    def _guild_of(self, channel_id: int) -> int | None:
        """The server of a channel; None for a DM."""
        if channel_id in (self.channel_id, self.thread_id):
            return self.guild_id
        return next((guild for guild, channel in self._guilds.items() if channel == channel_id), None)

    def _in_guild(self, channel_id: int) -> bool:
        return self._guild_of(channel_id) is not None

    def _channel(self, channel_id: int) -> dict[str, Any]:
        if channel_id == self.thread_id:
            return {
                "id": str(self.thread_id),
                "type": 11,
                "guild_id": str(self.guild_id),
                "parent_id": str(self.channel_id),
                "owner_id": "1",
                "name": "a thread",
                "member_count": 2,
                "message_count": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now(),
                    "locked": False,
                },
            }
        if channel_id == self.dm_channel_id:
            return {"id": str(self.dm_channel_id), "type": 1, "recipients": []}
        if not self._in_guild(channel_id):
            return {"id": str(channel_id), "type": 1, "recipients": []}  # any other channel: a DM
        return {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(self._guild_of(channel_id)),
            "name": "general",
            "position": 0,
            "permission_overwrites": self.overwrites.get(channel_id, []),
            "nsfw": False,
            "topic": None,
        }

    def _member(self, person: Person) -> dict[str, Any]:
        return {"user": person.user(), "roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0}

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.bot.id),
            "name": "thumbtune",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": Person(1, "owner").user(),
            "verify_key": "0" * 64,
            "flags": 0,
        }

    def _command(self, command: dict[str, Any], guild: str | None) -> dict[str, Any]:
        return command | {
            "id": str(self._new_id()),
            "application_id": str(self.bot.id),
            "version": "1",
            "guild_id": guild,
        }


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """A JSON body, or a multipart one (payload_json plus files[n]) as discord.py sends files."""
    if not request.can_read_body:
        return None, []
    if request.content_type == "application/json":
        return await request.json(), []
    if request.content_type == "multipart/form-data":
        form = await request.post()
        files = [
            (value.filename, value.file.read())
            for name, value in form.items()
            if name.startswith("files[") and isinstance(value, web.FileField)
        ]
        return json.loads(str(form["payload_json"])), files
    return None, []


def _json(data: Any, *, status: int = 200) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def _now(at: float | None = None) -> str:
    """An ISO time stamp, as Discord writes them: now, or the Unix time ``at``."""
    return (datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)).isoformat()
