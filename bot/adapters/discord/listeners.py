"""The gateway events: mentions, DMs and replies become prompts or corrections; raw reactions become votes.

Reactions come from the raw events: the cached ones miss reactions on messages that fell
out of the message cache, and their removals need the privileged members intent. The
gateway has no acknowledgement, so "commit, then acknowledge" means: a prompt is stored
as pending before its answer is generated, and is answered after a restart if the bot
stopped first (:mod:`bot.pending`). While the bot stops, prompts are stored and left for
the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import discord

from bot.adapters.base import ChatPrefix, InFlight, best_effort
from bot.adapters.discord.payloads import (
    PLATFORM,
    PROMPT_TYPES,
    failure,
    is_thread,
    reaction,
    reference,
    replied_key,
    replies_to,
    without_mention,
)
from bot.adapters.discord.replies import Replies
from bot.events import IncomingCorrection, IncomingPrompt
from bot.service import BotService, NotStored
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)

CORRECTION_NOTED = "✅"
NOT_TAKEN = "I could not take your message just now: my database refused to store it. Please ask again later."
# A reply the bot cannot read (no mention: Discord hides its text) gets a hint this often per person.
HINT_EVERY_S = 3600.0
UNREADABLE_REPLY = (
    "I can't read that reply: Discord shows me only messages that mention me (and replies to "
    "my /ask answers never do). Mention me in it, e.g. `@{name} better: …` or `@{name} your question`."
)


class Listeners:
    """What each gateway event does; the client's ``on_*`` handlers hand them over."""

    def __init__(
        self,
        client: discord.Client,
        service: BotService,
        *,
        replies: Replies,
        in_flight: InFlight,
        correction: ChatPrefix,
        draining: Callable[[], bool],
    ) -> None:
        self.client = client
        self.service = service
        self.replies = replies
        self.in_flight = in_flight
        self.correction = correction
        self.draining = draining  # stopping: prompts are stored, and answered by the next run
        self._hinted: dict[int, float] = {}  # person -> when they were last told to mention the bot

    # --- prompts and corrections ----------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.bot or message.type not in PROMPT_TYPES:
            return
        text = without_mention(message.content, me.id)
        replied = replied_key(message)
        mentioned = any(user.id == me.id for user in message.mentions)
        better = self.correction.rest(text)
        if replied is not None and better is not None:
            await self._correct(message, replied, better)
        elif message.guild is None or mentioned:
            await self._answer_live(message, text, replied)
        elif replied is not None and not message.content and replies_to(message, me.id):
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
        assert self.client.user is not None
        async with best_effort(f"hinting in channel {message.channel.id}", logger=log, describe=failure):
            await message.channel.send(
                UNREADABLE_REPLY.format(name=self.client.user.name),
                reference=reference(message),
                allowed_mentions=discord.AllowedMentions.none(),
            )

    async def _answer_live(self, message: discord.Message, text: str, replied: str | None) -> None:
        pending = await self.take(message, text, replied)  # before generating
        if pending is not None and not self.draining():  # stopping: the next run answers it
            await self.answer(message, pending)

    async def take(self, message: discord.Message, text: str, replied: str | None) -> PendingPrompt | None:
        """Store a message's prompt as pending (claimed by the message); None for one taken already."""
        channel = message.channel
        prompt = IncomingPrompt(
            platform=PLATFORM,
            channel=str(channel.id),
            user=str(message.author.id),
            text=text,
            conversation=await self.conversation(channel.id, channel, root=message.id, replied=replied),
            event_id=f"message:{message.id}",  # a replayed event, or one found again, never answers twice
        )
        try:
            return await self.service.take_prompt(prompt, thread=str(message.id))
        except NotStored:
            async with best_effort(f"telling channel {channel.id} a prompt was not stored", logger=log):
                await channel.send(NOT_TAKEN, reference=reference(message))
            return None

    async def answer(self, message: discord.Message, pending: PendingPrompt) -> None:
        """Answer a message taken as ``pending``, counted as in flight meanwhile."""
        with self.in_flight.holding():
            await self.replies.answer_message(message, pending)

    async def conversation(self, channel_id: int, channel: object, *, root: int, replied: str | None) -> str:
        """The conversation a prompt belongs to: the one of the answer it replies to, its thread, or its own."""
        if replied is not None:
            earlier = await self.service.conversation_of(replied)
            if earlier is not None:  # a reply to one of our answers continues its conversation
                return earlier
        if is_thread(channel):
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
            async with best_effort(f"marking correction {message.id} {CORRECTION_NOTED}", logger=log, describe=failure):
                await message.add_reaction(CORRECTION_NOTED)

    # --- votes ----------------------------------------------------------------------
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self._is_vote(payload):
            outcome = await self.service.on_reaction(reaction(payload))
            log.debug("reaction %s on message %s: %s", payload.emoji, payload.message_id, outcome.value)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        if self._is_vote(payload):
            outcome = await self.service.on_reaction_removed(reaction(payload))
            log.debug("reaction %s removed from message %s: %s", payload.emoji, payload.message_id, outcome.value)

    def _is_vote(self, payload: discord.RawReactionActionEvent) -> bool:
        """People's reactions on the bot's messages; the service checks the emoji and the answer."""
        me = self.client.user
        if me is None or payload.user_id == me.id:
            return False  # our own 👍/👎 come back as events
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return False  # not the bot's message (Discord names the author on additions in servers)
        if payload.member is not None and payload.member.bot:
            return False
        user = self.client.get_user(payload.user_id)
        return not (user is not None and user.bot)
