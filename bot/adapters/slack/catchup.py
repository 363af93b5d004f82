"""After downtime: the prompts people sent meanwhile, and the reactions answers show now.

Both read Slack's history through the Web API (``users.conversations``,
``conversations.history``, ``conversations.replies``, ``reactions.get``); the client waits
out each 429. What is done with them (answer, reconcile) is the platform template's
(:class:`bot.adapters.base.Platform`, :mod:`bot.catchup`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import ChatPrefix
from bot.adapters.slack.payloads import PERSON_SUBTYPES, Missed, Where, describe, message_id, short, strip_mention
from bot.adapters.slack.web_api import Users, api_error, pages, thread_of
from bot.catchup import MessageUnreadable, ShownReactions
from bot.service import BotService, NotStored

log = logging.getLogger(__name__)

# Takes a message addressed to the bot (Listeners.take): what answering it runs, or None.
Take = Callable[..., Awaitable[Coroutine[Any, Any, None] | None]]


class CatchUp:
    """Reads what happened while the bot was away, as the platform template asks for it."""

    def __init__(
        self, service: BotService, *, client: AsyncWebClient, users: Users, correction: ChatPrefix, take: Take
    ) -> None:
        self.service = service
        self.client = client
        self.users = users
        self.correction = correction
        self.take = take

    # --- prompts missed while down --------------------------------------------------
    async def missed_since(self, *, hours: float) -> list[tuple[float, Missed, str]]:
        """People's messages to the bot of the last ``hours`` with no reply of mine after them.

        Read from the conversations the bot is in (``users.conversations``,
        ``conversations.history``, ``conversations.replies`` for threads): a message from a
        person that mentions the bot (or any in a DM). Claimed as ``message:<channel>:<ts>``,
        the id live prompts are claimed by too.
        """
        client = self.client
        own = await self.users.own(client)
        oldest = time.time() - hours * 3600
        missed: list[tuple[float, Missed, str]] = []
        skipped: list[str] = []  # what could not be read (rate limits, a thread gone): said in the log
        async for channel, is_im in _my_conversations(client):
            try:
                async for thread in _threads_since(channel, oldest, client, skipped):
                    for message, thread_ts in unanswered(thread, own_user_id=own, is_im=is_im, oldest=oldest):
                        where = Where(channel=channel, ts=message["ts"], thread_ts=thread_ts)
                        text = strip_mention(message.get("text", ""), own)
                        what = describe({"event_id": message_id(where), "event": {"channel": channel}})
                        missed.append((float(message["ts"]), Missed(where, message["user"], text), what))
            except SlackApiError as exc:
                skipped.append(f"the rest of {channel} ({api_error(exc)})")
                log.warning("slack: cannot read the history of %s: %s; going on", channel, api_error(exc))
        if skipped:
            log.warning(
                "slack: looking for missed prompts skipped what Slack would not show: %s",
                ", ".join(skipped[:20]) + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""),
            )
        return missed

    async def take_missed(self, message: Missed) -> Coroutine[Any, Any, None] | None:
        """Store one missed prompt as pending, like a live one; the answering to run, or None."""
        client = self.client
        if await self.users.is_bot(message.user, client) or self.correction.starts(message.text):
            return None  # a bot's, or a correction: not a prompt, not answered
        where = message.where
        try:
            return await self.take(
                where, user=message.user, text=message.text, event_id=message_id(where), client=client
            )
        except NotStored:
            log.warning("slack: cannot store a prompt missed while down in %s; going on", where.channel)
            return None

    # --- reactions ------------------------------------------------------------------
    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        """One ``reactions.get`` (the client waits out 429s); the bot's own and other bots' left out."""
        parts = message_key.split(":")
        if len(parts) != 3:
            raise MessageUnreadable("not a Slack message key")
        channel, ts = parts[1], parts[2]
        client = self.client
        own = await self.users.own(client)
        try:
            response = await client.reactions_get(channel=channel, timestamp=ts, full=True)
        except SlackApiError as exc:
            error = api_error(exc)
            raise MessageUnreadable(error, gone=error == "message_not_found") from None
        return await self._people_reactions(response.get("message") or {}, own_user_id=own)

    async def _people_reactions(self, message: dict[str, Any], *, own_user_id: str | None) -> ShownReactions:
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
                if user != own_user_id and not await self.users.is_bot(user, self.client):
                    reactions.append((user, name))
        return ShownReactions(reactions=tuple(reactions), incomplete=frozenset(incomplete))


def unanswered(
    thread: list[dict[str, Any]], *, own_user_id: str | None, is_im: bool, oldest: float
) -> list[tuple[dict[str, Any], str]]:
    """(message, thread ts) of the people's messages to the bot in one thread with no reply of mine after them."""
    mention = f"<@{own_user_id}" if own_user_id else None
    mine = [float(m["ts"]) for m in thread if m.get("user") == own_user_id]
    found = []
    for message in thread:
        ts = message["ts"]
        if (
            float(ts) <= oldest
            or message.get("subtype") not in PERSON_SUBTYPES
            or message.get("bot_id")
            or not isinstance(message.get("user"), str)
            or message["user"] == own_user_id
            or not isinstance(message.get("text", ""), str)
            or not (is_im or (mention is not None and mention in message.get("text", "")))
            or any(answer > float(ts) for answer in mine)
        ):
            continue
        found.append((message, message.get("thread_ts") or ts))
    return found


async def _my_conversations(client: AsyncWebClient) -> AsyncIterator[tuple[str, bool]]:
    """(channel id, is a DM) of the conversations the bot is a member of (group DMs too)."""
    listed = pages(
        client.users_conversations, types="public_channel,private_channel,im,mpim", exclude_archived=True, limit=200
    )
    async for response in listed:
        for channel in response.get("channels") or []:
            if isinstance(channel, dict) and isinstance(channel.get("id"), str):
                yield channel["id"], bool(channel.get("is_im"))


async def _threads_since(
    channel: str, oldest: float, client: AsyncWebClient, skipped: list[str]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The messages of ``channel`` since ``oldest``, one thread at a time (a lone message is a thread).

    Pages are as long as Slack gives (an app distributed outside the Marketplace gets 15
    messages, one request a minute: the client waits out each 429). A thread that cannot
    be read is noted in ``skipped`` and left out, and the rest of the channel read on.
    """
    async for response in pages(client.conversations_history, channel=channel, oldest=f"{oldest:.6f}", limit=200):
        for message in response.get("messages") or []:
            if not isinstance(message, dict) or not isinstance(message.get("ts"), str):
                continue
            if message.get("reply_count") and float(message.get("latest_reply") or 0) > oldest:
                try:
                    thread = await thread_of(client, channel, message["ts"])
                except SlackApiError as exc:
                    # Not the parent alone either: the bot's answers in the thread are unknown.
                    skipped.append(f"thread {short(message['ts'])} in {channel} ({api_error(exc)})")
                    log.warning(
                        "slack: cannot read a thread in %s: %s; going on with the next", channel, api_error(exc)
                    )
                    continue
                yield thread
            else:
                yield [message]
