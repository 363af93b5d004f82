"""What the bot asks Discord for: the gateway intents it uses and the permissions each feature needs.

Declared once: the invite link is derived from :data:`NEEDS` (and docs/discord.md's table
is checked against it), and asks for nothing more.
"""

from __future__ import annotations

import discord

from bot.adapters.base import Need
from bot.adapters.discord.payloads import is_thread

# Each feature's permissions. Threads do not inherit Send Messages; a file (the chart)
# needs Attach Files, or Discord refuses the whole message (403, code 50013).
NEEDS: tuple[Need, ...] = (
    Need("see the channels and threads it is asked in", ("view_channel",)),
    Need("answer a mention in a channel", ("send_messages",)),
    Need("answer a mention inside a thread", ("send_messages_in_threads",)),
    Need("reply to the prompt; follow reply chains; find prompts sent while down", ("read_message_history",)),
    Need("pre-add 👍/👎 to answers and ✅ to corrections", ("add_reactions",)),
    Need("the `stats` chart (a PNG)", ("attach_files",)),
    Need("/ask", ("use_application_commands",)),
)
INVITE_PERMISSIONS = discord.Permissions(**{grant: True for need in NEEDS for grant in need.grants})


def required_intents() -> discord.Intents:
    """Only the intents the bot uses; none is privileged.

    Mentions of the bot and direct messages arrive with their text even without the
    privileged message-content intent, so that intent is not requested.
    """
    intents = discord.Intents.none()
    intents.guilds = True  # channels and threads in the cache (GUILD_CREATE)
    intents.guild_messages = True  # mentions and replies in servers
    intents.dm_messages = True  # direct messages
    intents.guild_reactions = True  # votes in servers
    intents.dm_reactions = True  # votes in direct messages
    return intents


def invite_url(application_id: int) -> str:
    """The OAuth2 link that adds the bot to a server with exactly the permissions it needs."""
    return discord.utils.oauth_url(
        application_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )


def send_permission(channel: object) -> str:
    """The permission posting in ``channel`` takes: threads do not inherit Send Messages."""
    return "Send Messages in Threads" if is_thread(channel) else "Send Messages"


def may_send(channel: object, permissions: discord.Permissions) -> bool:
    if is_thread(channel):
        return permissions.send_messages_in_threads
    return permissions.send_messages
