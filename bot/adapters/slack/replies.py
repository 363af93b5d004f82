"""What the bot posts on Slack: answers in their thread (an /ask's question first), files, announcements.

An answer is bound to its message before the thumbs are pre-added, so a vote that comes
meanwhile counts. Pre-added reactions are best-effort; answers are not.

A process killed after Slack accepted an answer and before the bot bound it leaves the
prompt pending with its answer stored. Before the next run posts that stored answer, it
reads the thread (``conversations.replies``): an unbound message of the bot's showing the
same text is that answer, and is bound instead of posted again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import best_effort
from bot.adapters.slack.payloads import PLATFORM, SLACK_NAMES, Where, short, shows
from bot.adapters.slack.web_api import Users, api_error, failure, thread_of
from bot.events import Reply, message_key, shown_text
from bot.service import BotService
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)


class Replies:
    """Posts through ``client`` (or the client a listener was given) for the service's answers."""

    def __init__(
        self, service: BotService, *, client: AsyncWebClient, users: Users, announce_channel: str | None
    ) -> None:
        self.service = service
        self.client = client
        self.users = users
        self.announce_channel = announce_channel

    async def answer(
        self,
        pending: PendingPrompt,
        *,
        late: bool = False,
        client: AsyncWebClient | None = None,
        respond: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        """Answer a pending prompt in its thread (an /ask gets its question posted first), then mark it answered."""
        client = client or self.client
        if pending.thread is None:
            placed = await self._place_question(pending, client=client, respond=respond)
            if placed is None:
                return
            pending = placed
        reply = await self.service.answer_pending(pending, late=late)
        assert pending.thread is not None  # placed above
        where = Where(channel=pending.channel, ts=pending.thread, thread_ts=pending.thread)
        # An answer stored before a restart may have been posted in the instant before the kill.
        posted = None if pending.prompt_id is None else await self._posted_before(where, reply, client=client)
        if posted is None:
            await self.post(where, reply, client=client, event_id=pending.event_id)
        else:
            log.info(
                "slack: the answer to event %s was posted before the restart; recorded, not posted again",
                pending.event_id,
            )
            await self._offer_rating(where, reply, posted, client=client)
        await self.service.pending_answered(pending)

    async def _posted_before(self, where: Where, reply: Reply, *, client: AsyncWebClient) -> str | None:
        """The ts of a message of the bot's in the thread that shows ``reply`` and is bound to no
        answer: posted by a run that was killed before it bound it. None when there is none, or
        the thread cannot be read (then it is posted: twice is better than never)."""
        if not reply.ok or not reply.response_ids:
            return None  # not a stored answer (an apology, an error note): nothing was bound
        try:
            own = await self.users.own(client)
            thread = await thread_of(client, where.channel, where.thread_ts)
        except SlackApiError as exc:
            log.warning(
                "slack: cannot read thread %s in %s to see whether the answer left pending was posted (%s); posting it",
                short(where.thread_ts),
                where.channel,
                api_error(exc),
            )
            return None
        if own is None:
            return None  # who "the bot" is is unknown: its messages cannot be told apart
        text = shown_text(reply)
        for message in thread:
            ts = message["ts"]
            if message.get("user") != own or ts == where.thread_ts or not shows(message, text):
                continue
            # Bound to an answer already (every Slack answer has a conversation): another answer's.
            if await self.service.conversation_of(message_key(PLATFORM, where.channel, ts)) is None:
                return str(ts)
        return None

    async def _place_question(
        self, pending: PendingPrompt, *, client: AsyncWebClient, respond: Callable[..., Awaitable[Any]] | None
    ) -> PendingPrompt | None:
        """/ask: post the question, so the answer has a thread and later turns have context."""
        try:
            posted = await client.chat_postMessage(
                channel=pending.channel, text=f"<@{pending.user}> asked: {pending.text}"
            )
        except SlackApiError as exc:
            log.warning("slack: cannot post the /ask question in %s: %s", pending.channel, api_error(exc))
            if respond is not None:
                await respond(
                    f"I can't post in this conversation ({api_error(exc)}). Invite me first, or mention me instead."
                )
            await self.service.pending_answered(pending)  # Slack refused for good: nowhere to answer
            return None
        ts = posted["ts"]
        return await self.service.place_pending(
            pending, thread=ts, conversation=message_key(PLATFORM, pending.channel, ts)
        )

    async def post(self, where: Where, reply: Reply, *, client: AsyncWebClient, event_id: str | None) -> None:
        """Post ``reply`` in the thread of ``where``; a rateable answer is bound to its message and gets the thumbs."""
        try:
            posted = await client.chat_postMessage(
                channel=where.channel, thread_ts=where.thread_ts, text=shown_text(reply)
            )
        except SlackApiError as exc:
            log.error("slack: could not post the answer in %s (event %s): %s", where.channel, event_id, api_error(exc))
            return
        if reply.attachment is not None:
            await self._upload(where, reply.attachment, client=client)
        await self._offer_rating(where, reply, posted["ts"], client=client)

    async def _offer_rating(self, where: Where, reply: Reply, answer_ts: str, *, client: AsyncWebClient) -> None:
        """A posted answer: bound to its message, then the reactions the core asks for pre-added."""
        if not reply.ok:
            return  # a refusal or error note: nothing to rate
        await self.service.answer_posted(reply.response_ids[0], message_key(PLATFORM, where.channel, answer_ts))
        for name in (SLACK_NAMES.get(emoji, emoji) for emoji in reply.reactions):
            # People can still add the reaction themselves; the answer stands.
            async with best_effort(f"slack: pre-adding :{name}: in {where.channel}", logger=log, describe=failure):
                await client.reactions_add(channel=where.channel, timestamp=answer_ts, name=name)

    async def _upload(self, where: Where, path: Path, *, client: AsyncWebClient) -> None:
        """Upload a file (the ``stats`` chart) into the thread; the text is already there."""
        try:
            await client.files_upload_v2(
                channel=where.channel, thread_ts=where.thread_ts, file=str(path), filename=path.name, title=path.name
            )
        except SlackApiError as exc:
            log.warning("slack: could not upload %s in %s: %s", path.name, where.channel, api_error(exc))
        except (SlackClientError, OSError) as exc:
            log.warning("slack: could not upload %s in %s: %s", path.name, where.channel, exc)

    async def announce(self, text: str) -> None:
        """Post a message of the bot's own in THUMBTUNE_ANNOUNCE_CHANNEL (when it is set)."""
        channel = self.announce_channel
        if not channel:
            return
        try:
            await self.client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            error = api_error(exc)
            if error != "not_in_channel":
                raise
            log.warning(
                "slack: cannot announce in THUMBTUNE_ANNOUNCE_CHANNEL %s (not_in_channel): invite the bot there "
                "(/invite @thumbtune), or add the chat:write.public scope for a public channel",
                short(channel),
            )
