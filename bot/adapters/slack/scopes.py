"""What each Slack feature needs, declared once: its bot scopes, the Web API methods it calls, its events.

``manifest.yml`` next to this file asks for exactly these (tests/test_slack.py checks it,
and that every Web API method this package calls is here); the scope table in
docs/slack.md follows it.
"""

from __future__ import annotations

from bot.adapters.base import Need

_HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")
NEEDS: tuple[Need, ...] = (
    Need("check the bot token at start", (), methods=("auth.test",)),
    Need("Socket Mode (the app-level token's connections:write)", (), methods=("apps.connections.open",)),
    Need(
        "answer a mention in a channel or group DM",
        ("app_mentions:read", "chat:write"),
        methods=("chat.postMessage",),
        events=("app_mention",),
    ),
    Need(
        "answer a direct message", ("im:history", "chat:write"), methods=("chat.postMessage",), events=("message.im",)
    ),
    Need(
        "corrections replied in an answer's thread (public, private channels, group DMs)",
        ("channels:history", "groups:history", "mpim:history"),
        events=("message.channels", "message.groups", "message.mpim"),
    ),
    Need(
        "/ask (the question is posted, the answer in its thread)",
        ("commands", "chat:write"),
        methods=("chat.postMessage",),
    ),
    Need("votes: people's reactions on answers", ("reactions:read",), events=("reaction_added", "reaction_removed")),
    Need("tell people from bots when they react", ("users:read",), methods=("users.info",)),
    Need("pre-add 👍/👎 to each answer", ("reactions:write",), methods=("reactions.add",)),
    Need("re-read the reactions on answers after downtime", ("reactions:read",), methods=("reactions.get",)),
    Need(
        "find prompts sent while down: the conversations the bot is in, and their history",
        ("channels:read", "groups:read", "im:read", "mpim:read", *_HISTORY),
        methods=("users.conversations", "conversations.history", "conversations.replies"),
    ),
    Need(
        "before posting an answer left pending, see whether the last run posted it (its thread)",
        _HISTORY,
        methods=("conversations.replies",),
    ),
    Need(
        "the `stats` chart (a PNG in the thread)",
        ("files:write",),
        methods=("files.getUploadURLExternal", "files.completeUploadExternal"),
    ),
    Need("announce a new version in THUMBTUNE_ANNOUNCE_CHANNEL", ("chat:write",), methods=("chat.postMessage",)),
)
