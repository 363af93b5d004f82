"""discord.py's objects and the core's values: message keys, reactions, replies, texts fit to post.

Pure functions of what discord.py hands over; nothing here calls Discord.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import discord

from bot.events import IncomingReaction, Reply, message_key

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_MESSAGE_CHARS = 2000  # Discord refuses longer messages
QUOTE_CHARS = 300  # how much of an /ask question is quoted above the answer

# Replies, plain messages and slash-command invocations; not joins, pins, thread starts...
PROMPT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
THREAD_TYPES = (
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)


def key_of(channel_id: int, message_id: int) -> str:
    return message_key(PLATFORM, str(channel_id), str(message_id))


def ids(key: str) -> tuple[int, int]:
    """(channel id, message id) of a key made by :func:`key_of`."""
    _, channel_id, message_id = key.split(":")
    return int(channel_id), int(message_id)


def reaction(payload: discord.RawReactionActionEvent) -> IncomingReaction:
    return IncomingReaction(
        platform=PLATFORM,
        message_key=key_of(payload.channel_id, payload.message_id),
        user=str(payload.user_id),
        # A standard emoji is its character (👍🏽); a custom one "<:name:id>", never in the table.
        emoji=str(payload.emoji),
    )


def reference(message: discord.Message) -> discord.MessageReference:
    """A reply to ``message``; posted as a plain message if the prompt was deleted meanwhile."""
    return message.to_reference(fail_if_not_exists=False)


def replied_key(message: discord.Message) -> str | None:
    """The key of the message ``message`` replies to, or None (not a reply, or a forward)."""
    ref = message.reference
    if ref is None or ref.message_id is None:
        return None
    if ref.type == discord.MessageReferenceType.forward:
        return None  # a forwarded message is not a reply
    return key_of(ref.channel_id or message.channel.id, ref.message_id)


def replies_to(message: discord.Message, user_id: int) -> bool:
    """Whether ``message`` replies to a message of ``user_id``'s (as Discord resolved it)."""
    resolved = message.reference.resolved if message.reference is not None else None
    return isinstance(resolved, discord.Message) and resolved.author.id == user_id


def is_thread(channel: object) -> bool:
    return getattr(channel, "type", None) in THREAD_TYPES


def without_mention(content: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()


def quote(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= QUOTE_CHARS else line[: QUOTE_CHARS - 1] + "…"


def files(reply: Reply) -> Sequence[discord.File]:
    """The reply's file (the `stats` chart) as send()'s ``files``; send()'s own "not given"
    (``discord.utils.MISSING``) when there is none or it is missing."""
    not_given: Sequence[discord.File] = discord.utils.MISSING  # discord.py types its sentinel Any
    path = reply.attachment
    if path is None:
        return not_given
    if not path.is_file():
        log.warning("the reply's attachment %s is missing; posting the text alone", path.name)
        return not_given
    return [discord.File(path, filename=path.name)]


def fit(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def describe(args: Sequence[Any]) -> str:
    """Where a failed event came from, by ids only (no message text in the log)."""
    for arg in args:
        if isinstance(arg, discord.Message):
            return f"message {arg.id} in channel {arg.channel.id}"
        if isinstance(arg, discord.RawReactionActionEvent):
            return f"reaction {arg.emoji} on message {arg.message_id} in channel {arg.channel_id}"
    return f"{len(args)} arguments"


def failure(exc: Exception) -> str:
    """A failed Discord call in a few words, for the log (never headers or tokens)."""
    if isinstance(exc, discord.HTTPException):
        return f"{exc.status} {exc.text}".strip()
    return f"{type(exc).__name__}: {exc}"
