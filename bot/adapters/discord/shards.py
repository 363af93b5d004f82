"""What one process's shards hold (``THUMBTUNE_DISCORD_SHARDS``): its servers' channels, and DMs on shard 0.

discord.py and Discord already route the live events: a process gets the events of the
servers on its shards, and DMs only if it runs shard 0. What it reads on its own after
downtime (the reactions on recent answers, prompts sent meanwhile) must follow the same
split, or every process would read, and one would answer, what belongs to another.

The database knows a stored answer's channel, not its server. A server channel of this
process's shards is in discord.py's cache (Discord sent the server when the shard
connected); one that is not is another shard's, or a DM. Only the process that runs
shard 0 takes DMs, so only it tells the two apart, with one REST read of the channel
(``GET /channels/{id}``), remembered for the life of the process.
"""

from __future__ import annotations

import logging

import discord

from bot.adapters.discord.payloads import failure
from bot.shards import Shards

log = logging.getLogger(__name__)

# Channels whose kind (a DM, or a server's) is remembered; the catch-up looks at a few hundred.
MAX_REMEMBERED = 10_000


class ShardScope:
    """Whether a server, a channel, or the DMs belong to this process's shards (all of them when unsharded)."""

    def __init__(self, client: discord.Client, shards: Shards | None) -> None:
        self.client = client
        self.shards = shards
        # channel id -> its server (0: a DM; None: cannot be seen, deleted), as Discord said
        self._servers: dict[int, int | None] = {}

    @property
    def partial(self) -> bool:
        """Whether other processes run some of the shards."""
        return self.shards is not None and not self.shards.every_shard

    @property
    def direct_messages(self) -> bool:
        """Whether DMs come to this process (it runs shard 0, or is not sharded)."""
        return self.shards is None or self.shards.direct_messages

    def has_guild(self, guild_id: int) -> bool:
        return self.shards is None or self.shards.has_guild(guild_id)

    async def has_channel(self, channel_id: int) -> bool:
        """Whether ``channel_id`` is a channel of this process's servers, or a DM it takes."""
        if not self.partial:
            return True
        channel = self.client.get_channel(channel_id)
        if channel is not None:
            guild = getattr(channel, "guild", None)
            return self.has_guild(guild.id) if guild is not None else self.direct_messages
        if not self.direct_messages:
            return False  # not in my servers: another shard's server, or a DM (shard 0's)
        server = await self._server_of(channel_id)
        return server is not None and (server == 0 or self.has_guild(server))

    async def is_direct(self, channel_id: int) -> bool:
        """Whether a channel that is not in the cache is a DM this process takes."""
        if not self.partial:
            return True  # one process holds every server: a channel it does not know is a DM
        return self.direct_messages and await self._server_of(channel_id) == 0

    async def _server_of(self, channel_id: int) -> int | None:
        """The server of a channel not in the cache (0 for a DM), by one REST read, remembered."""
        if channel_id in self._servers:
            return self._servers[channel_id]
        try:
            channel = await self.client.fetch_channel(channel_id)
        except (discord.NotFound, discord.Forbidden) as exc:
            # Deleted, or a server channel the bot cannot see: nothing of this process's there.
            log.debug("channel %s cannot be looked up (%s): not this process's", channel_id, failure(exc))
            server = None
        except discord.HTTPException as exc:
            log.warning("cannot tell whether channel %s is a DM (%s); leaving it out", channel_id, failure(exc))
            return None  # not remembered: the next catch-up asks again
        else:
            guild_id = getattr(channel, "guild_id", None) or getattr(getattr(channel, "guild", None), "id", None)
            server = int(guild_id) if guild_id else 0
        if len(self._servers) >= MAX_REMEMBERED:
            self._servers.clear()
        self._servers[channel_id] = server
        return server
