"""What the bot posts on Discord: answers as replies (an /ask's question quoted), the thumbs, announcements.

An answer is bound to its message before the thumbs are pre-added, so a vote that comes
meanwhile counts. The typing indicator and the pre-added reactions are best-effort;
answers are not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import discord

from bot.adapters.base import best_effort
from bot.adapters.discord.payloads import failure, files, fit, key_of, quote, reference
from bot.adapters.discord.permissions import send_permission
from bot.adapters.discord.shards import ShardScope
from bot.events import Reply, shown_text
from bot.service import BotService
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)


class Replies:
    """Posts the service's answers through the discord.py ``client``."""

    def __init__(self, client: discord.Client, service: BotService, *, scope: ShardScope) -> None:
        self.client = client
        self.service = service
        self.scope = scope  # which channels are this process's (THUMBTUNE_DISCORD_SHARDS)

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        """Answer a prompt left pending by the last run: as a reply to its message, or (an /ask,
        whose interaction has expired) in its channel with the question quoted."""
        reply = await self.service.answer_pending(pending, late=late)
        channel_id = int(pending.channel)
        channel = self.client.get_channel(channel_id) or self.client.get_partial_messageable(channel_id)
        if pending.thread is not None:
            ref = discord.MessageReference(
                message_id=int(pending.thread), channel_id=channel_id, fail_if_not_exists=False
            )
            text = shown_text(reply)
        else:
            ref, text = None, f"> {quote(pending.text)}\n{shown_text(reply)}"
        posted = await self.post_answer(channel, text, reply, reference=ref)  # type: ignore[arg-type]
        if posted is not None:
            await self.offer_rating(reply, channel_id=channel_id, message_id=posted.id)
        await self.service.pending_answered(pending)

    async def answer_message(self, message: discord.Message, pending: PendingPrompt) -> None:
        """Answer a person's message (stored as ``pending``) with a reply, typing meanwhile; then mark it answered."""
        channel = message.channel
        async with contextlib.AsyncExitStack() as typing:
            async with best_effort(f"showing typing in channel {channel.id}", logger=log, describe=failure):
                await typing.enter_async_context(channel.typing())
            reply = await self.service.answer_pending(pending)
        posted = await self.post_answer(channel, shown_text(reply), reply, reference=reference(message))
        if posted is not None:
            await self.offer_rating(reply, channel_id=channel.id, message_id=posted.id)
        await self.service.pending_answered(pending)

    async def post_answer(
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
                    failure(exc),
                    send_permission(channel),
                )
                return None
            log.warning(
                "channel %s refused the answer's file (%s): the bot needs Attach Files there; posting the text alone",
                where,
                failure(exc),
            )
        except discord.NotFound as exc:
            log.warning("cannot answer in channel %s (%s); the prompt is given up", where, failure(exc))
            return None
        without_file = dataclasses.replace(reply, attachment=None)
        return await self.post_answer(
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
            return await channel.send(fit(text), files=files(reply))
        return await channel.send(fit(text), reference=reference, files=files(reply))

    async def offer_rating(self, reply: Reply, *, channel_id: int, message_id: int) -> None:
        """A posted answer: bound to its message, then the reactions the core asks for pre-added."""
        if not reply.ok or not reply.response_ids:
            return
        # Bind first, so a vote that arrives while the thumbs are being added counts.
        await self.service.answer_posted(reply.response_ids[0], key_of(channel_id, message_id))
        answer = self.client.get_partial_messageable(channel_id).get_partial_message(message_id)
        for emoji in reply.reactions:
            # People can still add the reaction themselves; the answer stands.
            async with best_effort(f"pre-adding {emoji} to answer {message_id}", logger=log, describe=failure):
                await answer.add_reaction(emoji)

    async def announce(self, text: str, *, channel: str | None) -> None:
        """Post a message of the bot's own in ``channel`` (THUMBTUNE_ANNOUNCE_CHANNEL, when it is set);
        with several processes on shards, the one whose shards hold the channel posts it."""
        if not channel:
            return
        channel_id = int(channel)
        if not await self.scope.has_channel(channel_id):
            return  # another shard's: the process that runs it announces, once
        found = self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)
        if not isinstance(found, discord.abc.Messageable):
            log.warning("THUMBTUNE_ANNOUNCE_CHANNEL %s is not a channel the bot can write in", channel_id)
            return
        await found.send(fit(text), allowed_mentions=discord.AllowedMentions.none())
