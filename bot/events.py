"""Platform-neutral values that adapters hand to the core service.

Adapters translate Slack / Discord / shell payloads into these and back; the core
never sees a platform library type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Pre-added on every answer so people only have to click (canonical unicode; adapters
# translate them to their platform's names). A comparison gets bot.comparison.COMPARE_REACTIONS.
RATING_REACTIONS: tuple[str, ...] = ("👍", "👎")


@dataclass(frozen=True)
class IncomingPrompt:
    platform: str  # "slack", "discord", "shell"
    channel: str  # where it was asked (platform channel id)
    user: str  # platform user id: hashed before storing
    text: str
    conversation: str | None = None  # thread / reply chain key, for context and credit
    event_id: str | None = None  # platform delivery id, for dedup of retries


@dataclass(frozen=True)
class IncomingReaction:
    platform: str
    message_key: str  # the message the reaction is on (see message_key())
    user: str
    emoji: str  # as the platform names it ("+1::skin-tone-2", "👍🏽")
    event_id: str | None = None


@dataclass(frozen=True)
class IncomingCorrection:
    platform: str
    message_key: str  # the bot's answer being corrected
    user: str
    text: str  # the better answer, prefix already removed
    event_id: str | None = None


@dataclass(frozen=True)
class IncomingReply:
    """A person's message in a conversation that is not addressed to the bot (a Slack thread
    reply without a mention): read as implicit feedback on the answer before it (bot.implicit)."""

    platform: str
    channel: str
    conversation: str | None  # the thread the message is in; None: read against the channel
    user: str
    text: str
    event_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the service answers a prompt with."""

    text: str  # what to post
    response_ids: tuple[int, ...] = ()  # stored candidates (empty when nothing was generated)
    model_version: int | None = None
    ok: bool = True  # False: a refusal or error message, not a rateable answer
    attachment: Path | None = None  # a file to post with the text (the `stats` chart)
    preformatted: bool = False  # a table: platforms with markdown show it in a code block
    # Reactions the adapter pre-adds (canonical unicode): 👍 👎 on an answer, 1️⃣ 2️⃣ 🤝 👎 on
    # a comparison. Adapters translate them to their platform's names.
    reactions: tuple[str, ...] = RATING_REACTIONS
    compare: bool = False  # two candidates shown as 1️⃣ / 2️⃣ (response_ids[0] is the key)
    versions: tuple[int, ...] = ()  # model version of each shown candidate, in order


def shown_text(reply: Reply) -> str:
    """The reply's text as Slack and Discord show it (tables in a code block)."""
    return f"```\n{reply.text}\n```" if reply.preformatted else reply.text


def message_key(platform: str, *parts: str) -> str:
    """The stable key of a platform message, e.g. ``slack:C123:1700000000.000100``."""
    return ":".join((platform, *parts))
