"""After downtime: the mentions and DMs people sent meanwhile, and the reactions answers show now.

Both are read through discord.py (it waits out rate limits): the history of each text
channel and active thread the bot may read and answer in, and of the DM channels people
last asked in. What is done with them (answer, reconcile) is the platform template's
(:class:`bot.adapters.base.Platform`, :mod:`bot.catchup`). A process that runs some of
the bot's shards (``THUMBTUNE_DISCORD_SHARDS``) reads only what its shards hold
(:class:`~bot.adapters.discord.shards.ShardScope`): its servers, and the DMs on shard 0.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import discord
from discord.enums import ReactionType  # not exported at the top in 2.6.0 and 2.6.1

from bot.adapters.base import ChatPrefix
from bot.adapters.discord.listeners import Listeners
from bot.adapters.discord.payloads import PLATFORM, PROMPT_TYPES, failure, ids, replied_key, without_mention
from bot.adapters.discord.permissions import may_send, send_permission
from bot.adapters.discord.shards import ShardScope
from bot.catchup import MessageUnreadable, ShownReactions
from bot.service import BotService
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)

# People read per emoji on one answer when catching up (100 per request); an emoji with
# more is read only in part, and then none of its votes is retracted.
MAX_VOTERS_PER_EMOJI = 1000
# DM channels searched for prompts sent while the bot was down: the ones people last
# asked in (a bot cannot list its DM channels, so a first DM sent while down is not found).
MAX_DM_CHANNELS = 100

# Where the bot looks for prompts sent while it was down.
Readable = discord.TextChannel | discord.Thread | discord.PartialMessageable


class CatchUp:
    """Reads what happened while the bot was away, as the platform template asks for it."""

    def __init__(
        self,
        client: discord.Client,
        service: BotService,
        *,
        listeners: Listeners,
        correction: ChatPrefix,
        scope: ShardScope,
        max_voters_per_emoji: int = MAX_VOTERS_PER_EMOJI,
    ) -> None:
        self.client = client
        self.service = service
        self.listeners = listeners
        self.correction = correction
        self.scope = scope
        self.max_voters_per_emoji = max_voters_per_emoji

    # --- prompts missed while down --------------------------------------------------
    async def missed_since(self, *, hours: float, most: int) -> list[tuple[float, discord.Message, str]]:
        """People's prompts with no reply of the bot's, in each text channel and active thread the
        bot can read (and the DM channels people last asked in, :data:`MAX_DM_CHANNELS`): the
        messages of the last ``hours``, at most ``most`` per channel read. A person's message that
        mentions the bot (any, in a DM) is claimed as ``message:<id>``, like a live one."""
        if self.client.user is None:
            return []
        since = discord.utils.utcnow() - datetime.timedelta(hours=hours)
        missed: list[tuple[float, discord.Message, str]] = []
        async for channel in self._readable_channels():
            try:
                found = await self._unanswered_in(channel, since=since, most=most)
            except discord.HTTPException as exc:
                log.warning("cannot read the history of channel %s: %s; going on", channel.id, failure(exc))
                continue
            missed.extend((m.id, m, f"message {m.id} in channel {channel.id}, missed while down") for m in found)
        return missed

    async def take_missed(self, message: discord.Message) -> Coroutine[Any, Any, None] | None:
        """Store one missed prompt as pending, like a live one; the answering to run, or None."""
        me = self.client.user
        if me is None or self.client.is_closed():
            return None  # stopping: what is left is found again by the next run
        text = without_mention(message.content, me.id)
        pending = await self.listeners.take(message, text, replied_key(message))
        if pending is None:
            return None  # answered live meanwhile, or by an earlier run
        return self._answer_missed_one(message, pending)

    async def _answer_missed_one(self, message: discord.Message, pending: PendingPrompt) -> None:
        try:
            await self.listeners.answer(message, pending)
        except Exception:  # it stays pending: the next run answers it
            log.exception("answering message %s in channel %s failed; the bot goes on", message.id, message.channel.id)

    async def _readable_channels(self) -> AsyncIterator[Readable]:
        """Text channels and active threads whose history the bot may read, then recent DM channels
        (on shard 0: Discord sends DMs there)."""
        seen: set[int] = set()
        for guild in self.client.guilds:  # the servers of this process's shards: Discord sends no others
            if not self.scope.has_guild(guild.id):
                continue
            channels: list[discord.TextChannel | discord.Thread] = [*guild.text_channels, *guild.threads]
            for readable in channels:
                permissions = readable.permissions_for(guild.me)
                if not (permissions.view_channel and permissions.read_message_history):
                    continue
                seen.add(readable.id)
                if not may_send(readable, permissions):
                    log.warning(
                        "not looking for prompts missed in channel %s: the bot needs %s there to answer them",
                        readable.id,
                        send_permission(readable),
                    )
                    continue
                yield readable
        if not self.scope.direct_messages:
            return  # the process that runs shard 0 looks in the DMs
        for channel_id in map(int, await self.service.prompt_channels(PLATFORM, limit=MAX_DM_CHANNELS + len(seen))):
            if channel_id in seen or self.client.get_channel(channel_id) is not None:
                continue
            # Not a server channel in the cache: a DM (or a channel no longer seen, whose read fails);
            # with other processes on other shards, possibly a server channel of theirs.
            seen.add(channel_id)
            if await self.scope.is_direct(channel_id):
                yield self.client.get_partial_messageable(channel_id, type=discord.ChannelType.private)

    async def _unanswered_in(self, channel: Readable, *, since: datetime.datetime, most: int) -> list[discord.Message]:
        """People's prompts in ``channel`` since ``since`` with no reply of the bot's, newest first."""
        me = self.client.user
        assert me is not None
        answered: set[int] = set()  # messages the bot replied to (replies come after, so are read first)
        found: list[discord.Message] = []
        async for message in channel.history(limit=most):  # newest first
            if message.created_at < since:
                break
            if message.author.id == me.id:
                if message.reference is not None and message.reference.message_id is not None:
                    answered.add(message.reference.message_id)
                continue
            if message.id in answered or message.author.bot or message.type not in PROMPT_TYPES:
                continue
            if message.guild is not None and not any(user.id == me.id for user in message.mentions):
                continue  # chatter in a server channel, not addressed to the bot
            replied = replied_key(message)
            text = without_mention(message.content, me.id)
            if replied is not None and self.correction.starts(text):
                continue  # a correction is not a prompt; it is not answered
            found.append(message)
        return found

    # --- reactions ------------------------------------------------------------------
    async def catches_up_on(self, message_key: str) -> bool:
        """Whether an answer is in a channel of this process's shards (its reactions are read here)."""
        channel_id, _ = ids(message_key)
        return await self.scope.has_channel(channel_id)

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        """Read one answer and the people behind its rating reactions (discord.py waits out rate limits)."""
        channel_id, message_id = ids(message_key)
        try:
            return await self._reactions_shown(channel_id, message_id)
        except discord.NotFound as exc:
            raise MessageUnreadable(f"{exc.status} {exc.text}", gone=True) from None
        except discord.HTTPException as exc:
            raise MessageUnreadable(f"{exc.status} {exc.text}") from None

    async def _reactions_shown(self, channel_id: int, message_id: int) -> ShownReactions | None:
        """(user id, emoji) of people's rating reactions on one answer, and the emoji read only in part."""
        me = self.client.user
        assert me is not None
        channel = self.client.get_channel(channel_id) or self.client.get_partial_messageable(channel_id)
        message = await channel.fetch_message(message_id)  # type: ignore[union-attr]
        if message.author.id != me.id:
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
                    if user.id != me.id and not user.bot:
                        reactions.append((str(user.id), emoji))
                if read < count:
                    incomplete.add(emoji)
        return ShownReactions(reactions=tuple(reactions), incomplete=frozenset(incomplete))
