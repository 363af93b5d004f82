"""Discord (platform ``discord``): mentions, DMs and ``/ask`` become prompts; reactions become votes.

The unmodified discord.py client does all Discord I/O; this package only translates its
events into the core's values (:mod:`bot.events`) and back, on the lifecycle every
platform shares (:class:`bot.adapters.base.Platform`). One concern a module:

- ``client``: :class:`DiscordBot`, the discord.py ``Client`` (``AutoShardedClient`` on some shards):
  the parts composed once, the gateway;
- ``listeners``: what each gateway event does (prompts, corrections, votes);
- ``commands``: ``/ask`` in the client's ``CommandTree``, and its registration;
- ``replies``: what the bot posts (answers, the thumbs, announcements);
- ``catchup``: the prompts and reactions missed while down, read from channel histories;
- ``shards``: which servers and channels are this process's (``THUMBTUNE_DISCORD_SHARDS``);
- ``payloads``: discord.py's objects ↔ the core's values, texts fit to post;
- ``permissions``: the intents and the invite's permissions, what each feature needs.

(The package shares its name with the library; with absolute imports ``import discord``
in its modules still finds the library, because only the project root, not this folder,
is on sys.path.)
"""

from __future__ import annotations

from bot.adapters.base import Downtime
from bot.adapters.discord.client import ADAPTER, DiscordBot, DiscordStartupError
from bot.adapters.discord.payloads import MAX_MESSAGE_CHARS, PLATFORM, QUOTE_CHARS
from bot.adapters.discord.permissions import INVITE_PERMISSIONS, NEEDS, invite_url, required_intents

__all__ = [
    "ADAPTER",
    "INVITE_PERMISSIONS",
    "MAX_MESSAGE_CHARS",
    "NEEDS",
    "PLATFORM",
    "QUOTE_CHARS",
    "DiscordBot",
    "DiscordStartupError",
    "Downtime",
    "invite_url",
    "required_intents",
]
