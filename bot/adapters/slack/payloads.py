"""Slack payloads and the core's values: where a message is, what an event is, how it is logged.

Pure functions of the JSON Slack sends; nothing here calls Slack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.events import message_key

PLATFORM = "slack"
# Slack's names for the reactions the core asks to pre-add (Reply.reactions, unicode).
SLACK_NAMES = {"👍": "+1", "👎": "-1", "1\ufe0f\u20e3": "one", "2\ufe0f\u20e3": "two", "🤝": "handshake"}
# Longest piece of a payload (an emoji name, an id) quoted in one log line.
LOGGED_CHARS = 64
# Message subtypes that are still a person writing; every other subtype (edits,
# deletions, joins, bot messages) is not a prompt.
PERSON_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


@dataclass(frozen=True)
class Where:
    """A Slack message position: its channel, its ts, and the thread it belongs to."""

    channel: str
    ts: str
    thread_ts: str

    @property
    def conversation(self) -> str:
        return message_key(PLATFORM, self.channel, self.thread_ts)


@dataclass(frozen=True)
class Missed:
    """A person's message to the bot found after downtime."""

    where: Where
    user: str
    text: str


def from_someone_somewhere(event: dict[str, Any]) -> bool:
    """A person's message has who, where, when and a text; a malformed event may lack one."""
    return all(
        isinstance(event.get(name), str) and event[name].strip() for name in ("user", "channel", "ts")
    ) and isinstance(event.get("text", ""), str)


def where_of(event: dict[str, Any]) -> Where:
    ts = event.get("ts", "")
    return Where(channel=event.get("channel", ""), ts=ts, thread_ts=event.get("thread_ts") or ts)


def message_id(where: Where) -> str:
    """The id a person's message is claimed by as a prompt, live or found after downtime."""
    return f"message:{where.channel}:{where.ts}"


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The prompt without the ``<@U123>`` that addressed the bot."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return " ".join(text.split())


def shows(message: dict[str, Any], text: str) -> bool:
    """Whether a message Slack returns (``conversations.replies``) shows ``text`` as posted.

    Slack stores what it was given with its own markup: ``&``, ``<`` and ``>`` escaped,
    links (and the mentions it resolved) as ``<target|label>`` or ``<target>``. Those are
    undone before comparing; blanks at the ends do not count.
    """
    shown = message.get("text")
    if not isinstance(shown, str):
        return False
    plain = _SLACK_MARKUP.sub(lambda found: found.group(2) or found.group(1), shown)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return plain.strip() == text.strip()


_SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def malformed(body: object) -> bool:
    """A body no Slack request has: not an object, or an ``event`` that is not an object."""
    return not isinstance(body, dict) or ("event" in body and not isinstance(body["event"], dict))


def describe(body: object) -> str:
    """What a request was, for the log: its kind, event id and channel; never a user id or a
    text, and never a failure of its own, however malformed the body."""
    if not isinstance(body, dict):
        return f"a request body that is a {type(body).__name__}, not an object"
    event = body.get("event")
    if isinstance(event, dict) and event:
        item = event.get("item")
        channel = event.get("channel") or (item.get("channel") if isinstance(item, dict) else None)
        return f"event {short(event.get('type'))} {short(body.get('event_id'))} in {short(channel)}"
    if event:
        return f"event {short(body.get('event_id'))} that is a {type(event).__name__}, not an object"
    if body.get("command"):
        return f"command {short(body.get('command'))} in {short(body.get('channel_id'))}"
    return f"request of type {short(body.get('type'))}"


def short(value: object, most: int = LOGGED_CHARS) -> str:
    """A payload value for the log: a string or number cut to ``most`` characters, else its type."""
    if value is None or isinstance(value, (str, int, float)):
        text = str(value)
        return text if len(text) <= most else f"{text[: most - 1]}… ({len(text)} chars)"
    return f"a {type(value).__name__}"
