"""Discord (platform `discord`): mentions, DMs and /ask become prompts; reactions become votes.

The unmodified discord.py client does all Discord I/O (REST, gateway, rate limits,
reconnects); this module only translates its events into the core's values and back.
Reactions come from the raw events: the cached ones miss reactions on messages that
fell out of the message cache, and their removals need the privileged members intent.
The typing indicator, the pre-added 👍/👎 and the ✅ on a correction are best-effort;
answers and votes are not. Each time it connects, the bot answers what its last run left
pending, catches up on votes it missed (:mod:`bot.catchup`), then answers the mentions and
DMs people sent while it was down: the lifecycle of :class:`bot.adapters.base.Platform`;
this module supplies the gateway and the scan of channel histories.

The gateway has no acknowledgement, so "commit, then acknowledge" means: a prompt is
stored as pending before its answer is generated (and before /ask is deferred), and is
answered after a restart if the bot stopped first (:mod:`bot.pending`). On :meth:`stop`
the answers in flight finish within ``THUMBTUNE_SHUTDOWN_GRACE_S``; prompts that arrive
meanwhile are stored and answered by the next run.

(The module shares its name with the library; with absolute imports ``import discord``
below still finds the library, because only the package, not this folder, is on sys.path.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import re
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, ClassVar

import discord
from discord import app_commands
from discord.enums import ReactionType  # not exported at the top in 2.6.0 and 2.6.1

from bot.adapters.base import Downtime as Downtime  # what the catch-up once connected did
from bot.adapters.base import Lifecycle, Need, Platform, StartupError, best_effort
from bot.catchup import MessageUnreadable, ShownReactions
from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, Reply, message_key, shown_text
from bot.service import BotService, NotStored
from bot.settings import Settings, default_of
from storage.repository import PendingPrompt

PLATFORM = "discord"
CORRECTION_NOTED = "✅"
NOT_TAKEN = "I could not take your message just now: my database refused to store it. Please ask again later."
MAX_MESSAGE_CHARS = 2000  # Discord refuses longer messages
QUOTE_CHARS = 300  # how much of an /ask question is quoted above the answer
# People read per emoji on one answer when catching up (100 per request); an emoji with
# more is read only in part, and then none of its votes is retracted.
MAX_VOTERS_PER_EMOJI = 1000
# DM channels searched for prompts sent while the bot was down: the ones people last
# asked in (a bot cannot list its DM channels, so a first DM sent while down is not found).
MAX_DM_CHANNELS = 100

# Replies, plain messages and slash-command invocations; not joins, pins, thread starts...
_PROMPT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
_THREAD_TYPES = (
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)

INTENTS_HELP = (
    "Discord refused the gateway intents the bot asked for. In the Discord developer portal "
    "(https://discord.com/developers/applications) open your application, go to Bot -> "
    "Privileged Gateway Intents and check the list; thumbtune needs no privileged intent, "
    "only the default ones: Guilds, Guild Messages, Direct Messages, Guild Message Reactions "
    "and Direct Message Reactions. An app that reaches 10,000 users must apply for any "
    "privileged intent it uses."
)
MISSING_TOKEN = "the discord adapter needs DISCORD_TOKEN (see docs/discord.md)"
TOKEN_HELP = (
    "Discord rejected DISCORD_TOKEN. In the developer portal open your application -> Bot -> "
    "Reset Token, and put the new token in DISCORD_TOKEN (in .env or the environment)."
)

# Each feature's permissions, declared once: the invite asks for these and nothing more.
# Threads do not inherit Send Messages; a file (the chart) needs Attach Files, or Discord
# refuses the whole message (403, code 50013).
NEEDS: tuple[Need, ...] = (
    Need("see the channels and threads it is asked in", ("view_channel",)),
    Need("answer a mention in a channel", ("send_messages",)),
    Need("answer a mention inside a thread", ("send_messages_in_threads",)),
    Need("reply to the prompt; follow reply chains; find prompts sent while down", ("read_message_history",)),
    Need("pre-add 👍/👎 to answers and ✅ to corrections", ("add_reactions",)),
    Need("the `stats` chart (a PNG)", ("attach_files",)),
    Need("/ask", ("use_application_commands",)),
)
INVITE_PERMISSIONS = discord.Permissions(**{grant: True for need in NEEDS for grant in need.grants})
# A reply the bot cannot read (no mention: Discord hides its text) gets a hint this often per person.
HINT_EVERY_S = 3600.0
UNREADABLE_REPLY = (
    "I can't read that reply: Discord shows me only messages that mention me (and replies to "
    "my /ask answers never do). Mention me in it, e.g. `@{name} better: …` or `@{name} your question`."
)

log = logging.getLogger(__name__)

# Where the bot looks for prompts sent while it was down.
_Readable = discord.TextChannel | discord.Thread | discord.PartialMessageable


class DiscordStartupError(StartupError):
    """Discord refused to start the bot; the message says what to change, fit for a person."""


def required_intents() -> discord.Intents:
    """Only the intents the bot uses; none is privileged.

    Mentions of the bot and direct messages arrive with their text even without the
    privileged message-content intent, so that intent is not requested.
    """
    intents = discord.Intents.none()
    intents.guilds = True  # channels and threads in the cache (GUILD_CREATE)
    intents.guild_messages = True  # mentions and replies in servers
    intents.dm_messages = True  # direct messages
    intents.guild_reactions = True  # votes in servers
    intents.dm_reactions = True  # votes in direct messages
    return intents


class DiscordBot(discord.Client, Platform[discord.Message]):
    """A discord.py client that answers through :class:`BotService` and records votes."""

    platform: ClassVar[str] = PLATFORM

    def __init__(
        self,
        *,
        service: BotService,
        token: str,
        correction_prefix: str = default_of("correction_prefix"),
        guild_id: int | None = None,
        guild_ready_timeout: float = 2.0,
        reconcile_hours: float = default_of("reconcile_hours"),
        reconcile_max_messages: int = default_of("reconcile_max_messages"),
        max_voters_per_emoji: int = MAX_VOTERS_PER_EMOJI,
        announce_channel: str | None = None,
        pending_hours: float = default_of("pending_hours"),
        shutdown_grace_s: float = default_of("shutdown_grace_s"),
    ) -> None:
        super().__init__(
            intents=required_intents(),
            # Generated text must never ping anyone; only the asker gets the reply ping.
            allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True),
            # Votes use raw events, so no feature here depends on the message cache.
            max_messages=None,
            guild_ready_timeout=guild_ready_timeout,
        )
        lifecycle = Lifecycle(
            reconcile_hours=reconcile_hours,
            reconcile_max_messages=reconcile_max_messages,
            pending_hours=pending_hours,
            shutdown_grace_s=shutdown_grace_s,
        )
        # discord.Client does not call on along the MRO: the platform template is set up here.
        Platform.__init__(self, service, lifecycle=lifecycle, correction_prefix=correction_prefix)
        self._login_token = token  # never logged, never in a repr
        self.guild_id = guild_id
        self.max_voters_per_emoji = max_voters_per_emoji
        self.announce_channel = announce_channel
        self._hinted: dict[int, float] = {}  # person -> when they were last told to mention the bot
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_command_error)

        @self.tree.command(name="ask", description="Ask thumbtune something; rate the answer with 👍 or 👎.")
        @app_commands.describe(prompt="What you want to ask")
        async def ask(interaction: discord.Interaction, prompt: str) -> None:
            await self.answer_command(interaction, prompt)

    # --- the adapter contract -------------------------------------------------------
    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        if settings.discord_token is None:  # say so before the model loads
            raise StartupError(MISSING_TOKEN, exit_code=2)

    @classmethod
    def from_settings(cls, service: BotService, settings: Settings) -> DiscordBot:
        cls.check_settings(settings)
        assert settings.discord_token is not None  # checked just above
        return cls(
            service=service,
            token=settings.discord_token.get_secret_value(),
            correction_prefix=settings.correction_prefix,
            guild_id=settings.discord_guild_id,
            announce_channel=settings.announce_channel,
            **dataclasses.asdict(Lifecycle.from_settings(settings)),
        )

    def connected(self) -> bool | None:
        """Up when discord.py holds a ready gateway session."""
        return self.is_ready() and not self.is_closed()

    async def announce(self, text: str) -> None:
        """Post a message of the bot's own in THUMBTUNE_ANNOUNCE_CHANNEL (when it is set)."""
        if not self.announce_channel:
            return
        channel_id = int(self.announce_channel)
        channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("THUMBTUNE_ANNOUNCE_CHANNEL %s is not a channel the bot can write in", channel_id)
            return
        await channel.send(_fit(text), allowed_mentions=discord.AllowedMentions.none())

    async def connect_and_serve(self) -> None:
        """Log in and run until closed; refusals at start-up become :class:`DiscordStartupError`."""
        try:
            await self.start(self._login_token)
        except discord.LoginFailure:
            raise DiscordStartupError(TOKEN_HELP) from None
        except discord.PrivilegedIntentsRequired:
            raise DiscordStartupError(INTENTS_HELP) from None
        except discord.ConnectionClosed as exc:
            if exc.code == 4004:  # authentication failed on the gateway
                raise DiscordStartupError(TOKEN_HELP) from None
            if exc.code in (4013, 4014):  # invalid / disallowed intents
                raise DiscordStartupError(INTENTS_HELP) from None
            raise
        finally:
            if not self.is_closed():
                await self.close()

    async def setup_hook(self) -> None:
        # A test server gets the commands at once; global commands can take a while to show.
        guild = discord.Object(id=self.guild_id) if self.guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        try:
            commands = await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            # Mentions and DMs still work without the command, so keep running.
            log.error(
                "could not register /ask (%s %s); invite the bot with the applications.commands scope%s",
                exc.status,
                exc.text or "",
                " and check THUMBTUNE_DISCORD_GUILD_ID" if guild is not None else "",
            )
            return
        where = f"in server {self.guild_id}" if guild is not None else "globally"
        log.info("registered %s %s", ", ".join(f"/{command.name}" for command in commands), where)
        if guild is not None:
            await self._drop_global_copies({command.name for command in commands})

    async def _drop_global_copies(self, names: set[str]) -> None:
        """Registered in one server now: remove the global commands of the same name an earlier
        run registered, or that server would list each command twice."""
        try:
            for command in await self.tree.fetch_commands():
                if command.name in names:
                    await command.delete()
                    log.info(
                        "removed the global /%s: THUMBTUNE_DISCORD_GUILD_ID registers it in server %s only",
                        command.name,
                        self.guild_id,
                    )
        except discord.HTTPException as exc:
            log.warning("could not check for a global /ask to remove (%s); it may show twice", _failure(exc))

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("connected to Discord as %s (id %s) in %d servers", self.user, self.user.id, len(self.guilds))
        if self.application_id is not None:
            log.info("invite it to a server with %s", invite_url(self.application_id))
        # READY comes again after a session could not be resumed: events were lost, so catch up again.
        self.connected_now()

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        # While closing, discord.py still hands over events it had already read; their
        # handlers could not answer any more (the HTTP session is closed) and, once the
        # client has let go of its event loop, could not even be scheduled.
        if self.is_closed():
            log.debug("closing: %s event dropped", event)
            return
        super().dispatch(event, *args, **kwargs)

    async def close(self) -> None:
        await self.stop_catching_up()
        await self.in_flight.cancel()
        await super().close()

    async def stop(self) -> None:
        """Finish the answers in flight (within the grace; the rest stay pending), then close."""
        self.draining = True
        if not self.is_closed():
            await self.drain()
        await self.close()

    # --- catching up after downtime -----------------------------------------------
    async def missed_since(self, *, hours: float, most: int) -> list[tuple[float, discord.Message, str]]:
        """People's prompts with no reply of the bot's, in each text channel and active thread the
        bot can read (and the DM channels people last asked in, :data:`MAX_DM_CHANNELS`): the
        messages of the last ``hours``, at most ``most`` per channel read. A person's message that
        mentions the bot (any, in a DM) is claimed as ``message:<id>``, like a live one."""
        if self.user is None:
            return []
        since = discord.utils.utcnow() - datetime.timedelta(hours=hours)
        missed: list[tuple[float, discord.Message, str]] = []
        async for channel in self._readable_channels():
            try:
                found = await self._unanswered_in(channel, since=since, most=most)
            except discord.HTTPException as exc:
                log.warning("cannot read the history of channel %s: %s; going on", channel.id, _failure(exc))
                continue
            missed.extend((m.id, m, f"message {m.id} in channel {channel.id}, missed while down") for m in found)
        return missed

    async def take_missed(self, message: discord.Message) -> Coroutine[Any, Any, None] | None:
        if self.user is None or self.is_closed():
            return None  # stopping: what is left is found again by the next run
        text = _without_mention(message.content, self.user.id)
        pending = await self._take_message(message, text, _replied_key(message))
        if pending is None:
            return None  # answered live meanwhile, or by an earlier run
        return self._answer_missed_one(message, pending)

    async def _answer_missed_one(self, message: discord.Message, pending: PendingPrompt) -> None:
        try:
            await self._answer_taken(message, pending)
        except Exception:  # it stays pending: the next run answers it
            log.exception("answering message %s in channel %s failed; the bot goes on", message.id, message.channel.id)

    async def _readable_channels(self) -> AsyncIterator[_Readable]:
        """Text channels and active threads whose history the bot may read, then recent DM channels."""
        seen: set[int] = set()
        for guild in self.guilds:
            channels: list[discord.TextChannel | discord.Thread] = [*guild.text_channels, *guild.threads]
            for readable in channels:
                permissions = readable.permissions_for(guild.me)
                if not (permissions.view_channel and permissions.read_message_history):
                    continue
                seen.add(readable.id)
                if not _may_send(readable, permissions):
                    log.warning(
                        "not looking for prompts missed in channel %s: the bot needs %s there to answer them",
                        readable.id,
                        _send_permission(readable),
                    )
                    continue
                yield readable
        for channel_id in map(int, await self.service.prompt_channels(PLATFORM, limit=MAX_DM_CHANNELS + len(seen))):
            if channel_id not in seen and self.get_channel(channel_id) is None:
                # Not a server channel in the cache: a DM (or a channel no longer seen, whose read fails).
                seen.add(channel_id)
                yield self.get_partial_messageable(channel_id, type=discord.ChannelType.private)

    async def _unanswered_in(self, channel: _Readable, *, since: datetime.datetime, most: int) -> list[discord.Message]:
        """People's prompts in ``channel`` since ``since`` with no reply of the bot's, newest first."""
        assert self.user is not None
        answered: set[int] = set()  # messages the bot replied to (replies come after, so are read first)
        found: list[discord.Message] = []
        async for message in channel.history(limit=most):  # newest first
            if message.created_at < since:
                break
            if message.author.id == self.user.id:
                if message.reference is not None and message.reference.message_id is not None:
                    answered.add(message.reference.message_id)
                continue
            if message.id in answered or message.author.bot or message.type not in _PROMPT_TYPES:
                continue
            if message.guild is not None and not any(user.id == self.user.id for user in message.mentions):
                continue  # chatter in a server channel, not addressed to the bot
            replied = _replied_key(message)
            text = _without_mention(message.content, self.user.id)
            if replied is not None and self.correction.starts(text):
                continue  # a correction is not a prompt; it is not answered
            found.append(message)
        return found

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        """Read one answer and the people behind its rating reactions (discord.py waits out rate limits)."""
        channel_id, message_id = _ids(message_key)
        try:
            return await self._reactions_shown(channel_id, message_id)
        except discord.NotFound as exc:
            raise MessageUnreadable(f"{exc.status} {exc.text}", gone=True) from None
        except discord.HTTPException as exc:
            raise MessageUnreadable(f"{exc.status} {exc.text}") from None

    async def _reactions_shown(self, channel_id: int, message_id: int) -> ShownReactions | None:
        """(user id, emoji) of people's rating reactions on one answer, and the emoji read only in part."""
        assert self.user is not None
        channel = self.get_channel(channel_id) or self.get_partial_messageable(channel_id)
        message = await channel.fetch_message(message_id)  # type: ignore[union-attr]
        if message.author.id != self.user.id:
            return None  # not ours after all: leave its votes alone
        reactions: list[tuple[str, str]] = []
        incomplete: set[str] = set()
        for reaction in message.reactions:
            emoji = str(reaction.emoji)
            if not self.service.is_reaction_emoji(emoji):
                continue  # no requests for 🎉 or custom emoji
            normal = reaction.normal_count or max(reaction.count - reaction.burst_count, 0)
            for kind, count in (
                (ReactionType.normal, normal),
                (ReactionType.burst, reaction.burst_count),
            ):
                if count <= 0:
                    continue
                read = 0
                async for user in reaction.users(limit=min(count, self.max_voters_per_emoji), type=kind):
                    read += 1
                    if user.id != self.user.id and not user.bot:
                        reactions.append((str(user.id), emoji))
                if read < count:
                    incomplete.add(emoji)
        return ShownReactions(reactions=tuple(reactions), incomplete=frozenset(incomplete))

    # --- prompts and corrections ----------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if self.user is None or message.author.bot or message.type not in _PROMPT_TYPES:
            return
        text = _without_mention(message.content, self.user.id)
        replied = _replied_key(message)
        mentioned = any(user.id == self.user.id for user in message.mentions)
        better = self.correction.rest(text)
        if replied is not None and better is not None:
            await self._correct(message, replied, better)
        elif message.guild is None or mentioned:
            await self._answer_message(message, text, replied)
        elif replied is not None and not message.content and _replies_to(message, self.user.id):
            await self._hint_unreadable_reply(message)

    async def _hint_unreadable_reply(self, message: discord.Message) -> None:
        """A reply to one of the bot's messages whose text Discord hid (it did not mention the bot:
        a reply to an /ask answer never does, discord-api-docs issue 5395): say how to be read."""
        now = time.monotonic()
        last = self._hinted.get(message.author.id)
        if last is not None and now - last < HINT_EVERY_S:
            log.debug("a reply in channel %s could not be read; hinted at recently", message.channel.id)
            return
        self._hinted[message.author.id] = now
        log.info(
            "a reply in channel %s could not be read (no mention); told how to mention the bot", message.channel.id
        )
        assert self.user is not None
        async with best_effort(f"hinting in channel {message.channel.id}", logger=log, describe=_failure):
            await message.channel.send(
                UNREADABLE_REPLY.format(name=self.user.name),
                reference=_reference(message),
                allowed_mentions=discord.AllowedMentions.none(),
            )

    async def _answer_message(self, message: discord.Message, text: str, replied: str | None) -> None:
        pending = await self._take_message(message, text, replied)  # before generating
        if pending is not None and not self.draining:  # stopping: the next run answers it
            await self._answer_taken(message, pending)

    async def _take_message(self, message: discord.Message, text: str, replied: str | None) -> PendingPrompt | None:
        """Store a message's prompt as pending (claimed by the message); None for one taken already."""
        channel = message.channel
        prompt = IncomingPrompt(
            platform=PLATFORM,
            channel=str(channel.id),
            user=str(message.author.id),
            text=text,
            conversation=await self._conversation(channel.id, channel, root=message.id, replied=replied),
            event_id=f"message:{message.id}",  # a replayed event, or one found again, never answers twice
        )
        try:
            return await self.service.take_prompt(prompt, thread=str(message.id))
        except NotStored:
            async with best_effort(f"telling channel {channel.id} a prompt was not stored", logger=log):
                await channel.send(NOT_TAKEN, reference=_reference(message))
            return None

    async def _answer_taken(self, message: discord.Message, pending: PendingPrompt) -> None:
        channel = message.channel
        with self.in_flight.holding():
            async with contextlib.AsyncExitStack() as typing:
                async with best_effort(f"showing typing in channel {channel.id}", logger=log, describe=_failure):
                    await typing.enter_async_context(channel.typing())
                reply = await self.service.answer_pending(pending)
            posted = await self._post_answer(channel, shown_text(reply), reply, reference=_reference(message))
            if posted is not None:
                await self._offer_rating(reply, channel_id=channel.id, message_id=posted.id)
            await self.service.pending_answered(pending)

    async def answer_command(self, interaction: discord.Interaction, prompt: str) -> None:
        """/ask: store it, defer at once (Discord allows 3 s), generate, answer with a follow-up."""
        channel_id = interaction.channel_id or 0
        channel = interaction.channel
        try:
            pending = await self.service.take_prompt(
                IncomingPrompt(
                    platform=PLATFORM,
                    channel=str(channel_id),
                    user=str(interaction.user.id),
                    text=prompt,
                    conversation=await self._conversation(channel_id, channel, root=interaction.id, replied=None),
                    event_id=f"interaction:{interaction.id}",
                ),
                thread=None,  # answered as a follow-up; after a restart, in the channel with the question quoted
            )
        except NotStored:
            await interaction.response.send_message(NOT_TAKEN, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        if pending is None:
            await interaction.delete_original_response()
            return
        with self.in_flight.holding():
            reply = await self.service.answer_pending(pending)
            posted = await interaction.followup.send(
                _fit(f"> {_quote(prompt)}\n{shown_text(reply)}"), wait=True, files=_files(reply)
            )
            await self._offer_rating(reply, channel_id=channel_id, message_id=posted.id)
            await self.service.pending_answered(pending)

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        """Answer a prompt left pending by the last run: as a reply to its message, or (an /ask,
        whose interaction has expired) in its channel with the question quoted."""
        reply = await self.service.answer_pending(pending, late=late)
        channel_id = int(pending.channel)
        channel = self.get_channel(channel_id) or self.get_partial_messageable(channel_id)
        if pending.thread is not None:
            reference = discord.MessageReference(
                message_id=int(pending.thread), channel_id=channel_id, fail_if_not_exists=False
            )
            text = shown_text(reply)
        else:
            reference, text = None, f"> {_quote(pending.text)}\n{shown_text(reply)}"
        posted = await self._post_answer(channel, text, reply, reference=reference)  # type: ignore[arg-type]
        if posted is not None:
            await self._offer_rating(reply, channel_id=channel_id, message_id=posted.id)
        await self.service.pending_answered(pending)

    async def _post_answer(
        self,
        channel: discord.abc.Messageable,
        text: str,
        reply: Reply,
        *,
        reference: discord.MessageReference | None,
    ) -> discord.Message | None:
        """Post an answer; None when Discord refuses it for good (then the prompt is given up, logged).

        A file Discord refuses (no Attach Files: it refuses the whole message) is left off and
        the text posted alone. Other errors (a lost connection) raise: the prompt stays pending.
        """
        where = getattr(channel, "id", "?")
        try:
            return await self._post(channel, text, reply, reference=reference)
        except discord.Forbidden as exc:
            if reply.attachment is None:
                log.warning(
                    "cannot answer in channel %s (%s): the bot needs %s there; the prompt is given up",
                    where,
                    _failure(exc),
                    _send_permission(channel),
                )
                return None
            log.warning(
                "channel %s refused the answer's file (%s): the bot needs Attach Files there; posting the text alone",
                where,
                _failure(exc),
            )
        except discord.NotFound as exc:
            log.warning("cannot answer in channel %s (%s); the prompt is given up", where, _failure(exc))
            return None
        without_file = dataclasses.replace(reply, attachment=None)
        return await self._post_answer(
            channel, f"{text}\n(I may not attach files here.)", without_file, reference=reference
        )

    async def _post(
        self,
        channel: discord.abc.Messageable,
        text: str,
        reply: Reply,
        *,
        reference: discord.MessageReference | None,
    ) -> discord.Message:
        if reference is None:
            return await channel.send(_fit(text), files=_files(reply))
        return await channel.send(_fit(text), reference=reference, files=_files(reply))

    async def _offer_rating(self, reply: Reply, *, channel_id: int, message_id: int) -> None:
        if not reply.ok or not reply.response_ids:
            return
        # Bind first, so a vote that arrives while the thumbs are being added counts.
        await self.service.answer_posted(reply.response_ids[0], _key(channel_id, message_id))
        answer = self.get_partial_messageable(channel_id).get_partial_message(message_id)
        for emoji in reply.reactions:
            # People can still add the reaction themselves; the answer stands.
            async with best_effort(f"pre-adding {emoji} to answer {message_id}", logger=log, describe=_failure):
                await answer.add_reaction(emoji)

    async def _conversation(self, channel_id: int, channel: object, *, root: int, replied: str | None) -> str:
        if replied is not None:
            earlier = await self.service.conversation_of(replied)
            if earlier is not None:  # a reply to one of our answers continues its conversation
                return earlier
        if getattr(channel, "type", None) in _THREAD_TYPES:
            return f"{PLATFORM}:{channel_id}"  # a whole thread is one conversation
        return f"{PLATFORM}:{channel_id}:{root}"

    async def _correct(self, message: discord.Message, replied: str, text: str) -> None:
        stored = await self.service.on_correction(
            IncomingCorrection(
                platform=PLATFORM,
                message_key=replied,
                user=str(message.author.id),
                text=text,
                event_id=f"message:{message.id}",
            )
        )
        if stored is not None:
            async with best_effort(
                f"marking correction {message.id} {CORRECTION_NOTED}", logger=log, describe=_failure
            ):
                await message.add_reaction(CORRECTION_NOTED)

    # --- votes ----------------------------------------------------------------------
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self._is_vote(payload):
            outcome = await self.service.on_reaction(_reaction(payload))
            log.debug("reaction %s on message %s: %s", payload.emoji, payload.message_id, outcome.value)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        if self._is_vote(payload):
            outcome = await self.service.on_reaction_removed(_reaction(payload))
            log.debug("reaction %s removed from message %s: %s", payload.emoji, payload.message_id, outcome.value)

    def _is_vote(self, payload: discord.RawReactionActionEvent) -> bool:
        """People's reactions on the bot's messages; the service checks the emoji and the answer."""
        if self.user is None or payload.user_id == self.user.id:
            return False  # our own 👍/👎 come back as events
        if payload.message_author_id is not None and payload.message_author_id != self.user.id:
            return False  # not the bot's message (Discord names the author on additions in servers)
        if payload.member is not None and payload.member.bot:
            return False
        user = self.get_user(payload.user_id)
        return not (user is not None and user.bot)

    # --- failures -------------------------------------------------------------------
    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py calls this from inside its own try/except: log and keep serving.
        log.exception("Discord %s handler failed (%s); the bot goes on", event_method, _describe(args))

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        name = interaction.command.name if interaction.command else "?"
        log.error(
            "/%s failed (interaction %s in channel %s); the bot goes on",
            name,
            interaction.id,
            interaction.channel_id,
            exc_info=error,
        )
        with contextlib.suppress(discord.HTTPException):  # it may have expired; the log has the details
            await interaction.followup.send("Sorry, something went wrong answering that.", ephemeral=True)


def invite_url(application_id: int) -> str:
    """The OAuth2 link that adds the bot to a server with exactly the permissions it needs."""
    return discord.utils.oauth_url(
        application_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )


def _key(channel_id: int, message_id: int) -> str:
    return message_key(PLATFORM, str(channel_id), str(message_id))


def _ids(key: str) -> tuple[int, int]:
    """(channel id, message id) of a key made by :func:`_key`."""
    _, channel_id, message_id = key.split(":")
    return int(channel_id), int(message_id)


def _reaction(payload: discord.RawReactionActionEvent) -> IncomingReaction:
    return IncomingReaction(
        platform=PLATFORM,
        message_key=_key(payload.channel_id, payload.message_id),
        user=str(payload.user_id),
        # A standard emoji is its character (👍🏽); a custom one "<:name:id>", never in the table.
        emoji=str(payload.emoji),
    )


def _reference(message: discord.Message) -> discord.MessageReference:
    """A reply to ``message``; posted as a plain message if the prompt was deleted meanwhile."""
    return message.to_reference(fail_if_not_exists=False)


def _replied_key(message: discord.Message) -> str | None:
    reference = message.reference
    if reference is None or reference.message_id is None:
        return None
    if reference.type == discord.MessageReferenceType.forward:
        return None  # a forwarded message is not a reply
    return _key(reference.channel_id or message.channel.id, reference.message_id)


def _replies_to(message: discord.Message, user_id: int) -> bool:
    """Whether ``message`` replies to a message of ``user_id``'s (as Discord resolved it)."""
    resolved = message.reference.resolved if message.reference is not None else None
    return isinstance(resolved, discord.Message) and resolved.author.id == user_id


def _send_permission(channel: object) -> str:
    """The permission posting in ``channel`` takes: threads do not inherit Send Messages."""
    return "Send Messages in Threads" if getattr(channel, "type", None) in _THREAD_TYPES else "Send Messages"


def _may_send(channel: object, permissions: discord.Permissions) -> bool:
    if getattr(channel, "type", None) in _THREAD_TYPES:
        return permissions.send_messages_in_threads
    return permissions.send_messages


def _without_mention(content: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()


def _quote(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= QUOTE_CHARS else line[: QUOTE_CHARS - 1] + "…"


def _files(reply: Reply) -> Sequence[discord.File]:
    """The reply's file (the `stats` chart) as send()'s ``files``; send()'s own "not given"
    (``discord.utils.MISSING``) when there is none or it is missing."""
    path = reply.attachment
    if path is None:
        return discord.utils.MISSING
    if not path.is_file():
        log.warning("the reply's attachment %s is missing; posting the text alone", path.name)
        return discord.utils.MISSING
    return [discord.File(path, filename=path.name)]


def _fit(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _describe(args: Sequence[Any]) -> str:
    """Where a failed event came from, by ids only (no message text in the log)."""
    for arg in args:
        if isinstance(arg, discord.Message):
            return f"message {arg.id} in channel {arg.channel.id}"
        if isinstance(arg, discord.RawReactionActionEvent):
            return f"reaction {arg.emoji} on message {arg.message_id} in channel {arg.channel_id}"
    return f"{len(args)} arguments"


def _failure(exc: Exception) -> str:
    """A failed Discord call in a few words, for the log (never headers or tokens)."""
    if isinstance(exc, discord.HTTPException):
        return f"{exc.status} {exc.text}".strip()
    return f"{type(exc).__name__}: {exc}"


ADAPTER = DiscordBot
