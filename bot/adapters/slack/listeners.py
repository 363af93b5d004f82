"""The bolt listeners: mentions, DMs and thread replies, ``/ask``, reactions added and removed.

Commit, then acknowledge: the app processes an event before it answers Slack
(``process_before_response``). A listener stores what the event brings (a vote, a
correction, a prompt as pending) and only then does the 200 (or the Socket Mode ack) go
back; when the database refuses the write, Slack gets a 500 (no ack) and sends the event
again. Generating and posting an answer run afterwards, in tasks of the bot's own
(:class:`bot.adapters.base.InFlight`). Exactly-once handling rests on the ids the service
claims in the database, so a retried delivery is a no-op, also after a restart.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import ChatPrefix, InFlight, best_effort
from bot.adapters.slack.payloads import (
    PERSON_SUBTYPES,
    PLATFORM,
    Where,
    describe,
    from_someone_somewhere,
    message_id,
    short,
    strip_mention,
    where_of,
)
from bot.adapters.slack.replies import Replies
from bot.adapters.slack.web_api import Users
from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, IncomingReply, Reply, message_key
from bot.service import BotService, NotStored

log = logging.getLogger(__name__)

ASK_COMMAND = "/ask"
THINKING = "thinking… I'll answer in a thread here."
NOT_TAKEN = (
    "I could not take your message just now: my database refused to store it. "
    "Slack will send it to me again; if I still cannot answer, please ask again later."
)
NOT_TAKEN_ASK = "I cannot take questions just now: my database refused to store yours. Please try again later."
# Event ids of the listeners started most recently (Listeners.events_started), for diagnostics and tests.
EVENTS_REMEMBERED = 256

# A listener: stores what its event brings, returns the slow rest (answering) or None.
Listener = Callable[..., Awaitable[Coroutine[Any, Any, None] | None]]


class ShuttingDown(Exception):
    """An event arrived after the bot began to stop: not taken, not acknowledged; Slack sends it again."""


class Listeners:
    """What each Slack event does, registered on the bolt app by :meth:`register`."""

    def __init__(
        self,
        service: BotService,
        *,
        users: Users,
        replies: Replies,
        in_flight: InFlight,
        correction: ChatPrefix,
        draining: Callable[[], bool],
    ) -> None:
        self.service = service
        self.users = users
        self.replies = replies
        self.in_flight = in_flight
        self.correction = correction
        self.draining = draining  # stopping: events are left for Slack to send again
        # The envelopes' event ids of the newest listeners started, oldest first.
        self.events_started: collections.deque[str | None] = collections.deque(maxlen=EVENTS_REMEMBERED)
        self._told_not_taken: set[str] = set()  # event ids whose sender heard that it could not be stored

    def register(self, app: AsyncApp) -> None:
        app.event("app_mention")(self._accepting(self._on_mention))
        app.event("message")(self._accepting(self._on_message))
        app.event("reaction_added")(self._accepting(self._on_reaction_added))
        app.event("reaction_removed")(self._accepting(self._on_reaction_removed))
        app.command(ASK_COMMAND)(self._on_ask)
        app.error(self._on_error)

    def _accepting(self, listener: Listener) -> Callable[..., Awaitable[None]]:
        """Run an event listener before Slack is acknowledged; what it leaves for later runs in a task.

        The listener stores what the event brings and returns the slow rest (generating and
        posting an answer) as a coroutine, or None. If it raises (the database refused the
        write), bolt answers 500 and sends no ack, so Slack delivers the event again.
        """

        @functools.wraps(listener)
        async def accept(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
            if self.draining():
                raise ShuttingDown(f"stopping: {describe(body)} is left for Slack to send again")
            self.events_started.append(body.get("event_id"))
            follow_up = await listener(event, body, context)
            if follow_up is not None:
                self._in_own_task(follow_up, body)

        return accept

    def _in_own_task(self, work: Coroutine[Any, Any, None], body: dict[str, Any]) -> None:
        """Run the slow part of handling an event in flight; a failure is logged with the event
        it came from (described: the body has user ids and texts)."""
        self.in_flight.spawn(work, what=describe(body))

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        if isinstance(error, ShuttingDown):
            log.info("slack: %s", error)
            return
        # The bot goes on; log what was being handled (never the headers, they carry tokens).
        log.error("slack handler failed for %s: %s", describe(body), short(repr(error), 200), exc_info=error)

    # --- asking ---------------------------------------------------------------------
    async def _on_mention(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> Coroutine[Any, Any, None] | None:
        if not from_someone_somewhere(event):
            return None
        channel = event["channel"]
        if channel.startswith("D"):
            return None  # direct messages arrive as message.im; answering both would answer twice
        text = strip_mention(event.get("text", ""), context.bot_user_id)
        return await self.take(
            where_of(event), user=event.get("user", ""), text=text, event_id=body.get("event_id"), client=context.client
        )

    async def _on_message(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> Coroutine[Any, Any, None] | None:
        if event.get("subtype") not in PERSON_SUBTYPES or event.get("bot_id") or not from_someone_somewhere(event):
            return None  # edits, deletions, joins and other bots' messages
        where = where_of(event)
        text = event.get("text", "")
        user, event_id = event["user"], body.get("event_id")
        if event.get("channel_type") == "im":
            return await self.take(where, user=user, text=text, event_id=event_id, client=context.client)
        # In channels only thread replies with the prefix matter here; a message that
        # mentions the bot comes as app_mention too and is handled there.
        mentions_bot = context.bot_user_id is not None and f"<@{context.bot_user_id}" in text
        better = self.correction.rest(text)
        if where.ts != where.thread_ts and not mentions_bot and better is not None:
            await self._correct(where, user=user, better=better, event_id=event_id)
        elif where.ts != where.thread_ts and not mentions_bot:
            await self._on_thread_reply(where, user=user, text=text, event_id=event_id)
        return None

    # --- implicit feedback ----------------------------------------------------------
    async def _on_thread_reply(self, where: Where, *, user: str, text: str, event_id: str | None) -> None:
        """A thread reply that does not address the bot: with THUMBTUNE_IMPLICIT on, the asker's
        thanks or complaint about the answer before it (bot.implicit); stored before the ack."""
        if not self.service.reads_replies:
            return
        outcome = await self.service.on_reply(
            IncomingReply(
                platform=PLATFORM,
                channel=where.channel,
                conversation=where.conversation,
                user=user,
                text=text,
                event_id=event_id,
            )
        )
        if outcome is not None:
            log.info("slack: reply in %s -> %s", short(where.conversation), outcome.value)

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
        if self.draining():
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
            self._in_own_task(self.replies.answer(pending, client=context.client, respond=respond), body)

    async def take(
        self, where: Where, *, user: str, text: str, event_id: str | None, client: AsyncWebClient
    ) -> Coroutine[Any, Any, None] | None:
        """A message addressed to the bot: a correction in an answer's thread, else a question.

        What it brings is stored now; what is returned (answering) runs after the acknowledgement.
        """
        better = self.correction.rest(text)
        if better is None:
            # Claimed by the message, not the envelope: the catch-up of missed prompts
            # (answer_missed) finds the same message by its channel and ts.
            event_id = message_id(where)
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
            return None if pending is None else self.replies.answer(pending, client=client)
        if where.ts != where.thread_ts:
            await self._correct(where, user=user, better=better, event_id=event_id)
        elif event_id is None or await self.service.claim_event(PLATFORM, event_id):
            # Outside a thread it is unclear which answer is meant; say how, once per event.
            hint = (
                f"To suggest a better answer, reply in the thread of my answer, starting with `{self.correction.word}`"
            )
            return self.replies.post(where, Reply(hint, ok=False), client=client, event_id=event_id)
        return None

    def _tell_not_taken(self, where: Where, *, event_id: str | None, client: AsyncWebClient) -> None:
        """The prompt could not be stored: say so in its thread, once per event (Slack's retries ask again)."""
        if event_id is not None:
            if event_id in self._told_not_taken:
                return
            self._told_not_taken.add(event_id)

        async def tell() -> None:
            async with best_effort(f"slack: telling {where.channel} a prompt was not stored", logger=log):
                await client.chat_postMessage(channel=where.channel, thread_ts=where.thread_ts, text=NOT_TAKEN)

        self._in_own_task(tell(), {"event_id": event_id})

    # --- corrections ----------------------------------------------------------------
    async def _correct(self, where: Where, *, user: str, better: str, event_id: str | None) -> None:
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
        reaction = self._reaction(event, body, context)
        if reaction is None:
            return None
        outcome = await self.service.on_reaction(reaction)
        log.info("slack: reaction :%s: on %s -> %s", short(reaction.emoji), short(reaction.message_key), outcome.value)
        if self.users.looked_up(reaction.user):
            return None
        return self._unless_by_a_bot(reaction, context.client)

    async def _unless_by_a_bot(self, reaction: IncomingReaction, client: AsyncWebClient) -> None:
        """After the ack: look the reactor up (users.info, cached); a bot's vote is taken back."""
        if await self.users.is_bot(reaction.user, client):
            outcome = await self.service.on_reaction_removed(dataclasses.replace(reaction, event_id=None))
            log.info(
                "slack: reaction :%s: on %s was a bot's: not a vote (%s)",
                short(reaction.emoji),
                short(reaction.message_key),
                outcome.value,
            )

    async def _on_reaction_removed(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        reaction = self._reaction(event, body, context)
        if reaction is not None:
            outcome = await self.service.on_reaction_removed(reaction)
            log.info(
                "slack: reaction :%s: removed from %s -> %s",
                short(reaction.emoji),
                short(reaction.message_key),
                outcome.value,
            )

    def _reaction(
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
        elif self.users.known_bot(user):  # known from an earlier look-up; unknown ones are looked up after the ack
            ignored = "by a bot"
        else:
            return IncomingReaction(
                platform=PLATFORM,
                message_key=message_key(PLATFORM, item.get("channel", ""), item.get("ts", "")),
                user=user,
                emoji=emoji,
                event_id=body.get("event_id"),
            )
        log.info("slack: ignored reaction :%s: (%s, event %s)", short(emoji), ignored, short(body.get("event_id")))
        return None
