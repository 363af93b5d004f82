"""Which of a Discord bot's gateway shards one process runs (``THUMBTUNE_DISCORD_SHARDS``).

Discord splits a large bot's servers over ``count`` gateway connections (shards): a
server belongs to shard ``(guild_id >> 22) % count``, and direct messages come on shard
0 only. Several processes on one database each run some of the shards; the union of
their ids is ``0 .. count - 1``. Pure values here (no Discord library): the settings
parse them, the Discord adapter hands them to discord.py and scans only what its shards
hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A bot needs one shard per 2,500 servers; far above any real count, low enough to refuse a typo.
MAX_SHARDS = 65_536
_SPEC = re.compile(r"^\s*([0-9,\s-]+?)\s*/\s*([0-9]+)\s*$")
EXAMPLE = "0,1/4 (this process runs shards 0 and 1 of 4) or 0-3/8"


@dataclass(frozen=True)
class Shards:
    """Shard ``ids`` (ascending, each once) of ``count`` shards in all."""

    ids: tuple[int, ...]
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be from 1 to {MAX_SHARDS}, got {self.count}")
        if not self.ids:
            raise ValueError(f"names no shard id; expected e.g. {EXAMPLE}")
        for shard in self.ids:
            if not 0 <= shard < self.count:
                raise ValueError(
                    f"shard {shard} is out of range: with {self.count} shards the ids run from 0 to {self.count - 1}"
                )
        if len(set(self.ids)) != len(self.ids):
            repeated = next(shard for shard in self.ids if self.ids.count(shard) > 1)
            raise ValueError(f"names shard {repeated} twice")
        object.__setattr__(self, "ids", tuple(sorted(self.ids)))

    @classmethod
    def parse(cls, text: str) -> Shards | None:
        """``IDS/COUNT``: ids a comma list of numbers and ranges (``0,1/4``, ``0-3/8``); empty: None.

        Raises ValueError with a one-line message for anything else.
        """
        if not text.strip():
            return None
        match = _SPEC.match(text)
        if match is None:
            raise ValueError(f"expected shard ids / shard count, e.g. {EXAMPLE}; got {text.strip()[:40]!r}")
        ids: list[int] = []
        for item in match.group(1).split(","):
            first, dash, last = (part.strip() for part in item.partition("-"))
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ValueError(f"expected shard ids / shard count, e.g. {EXAMPLE}; got {text.strip()[:40]!r}")
            low, high = int(first), int(last) if dash else int(first)
            if high < low:
                raise ValueError(f"the shard range {low}-{high} runs backwards")
            if high - low >= MAX_SHARDS:
                raise ValueError(f"the shard range {low}-{high} is longer than {MAX_SHARDS} shards")
            ids.extend(range(low, high + 1))
        return cls(ids=tuple(ids), count=int(match.group(2)))

    def __str__(self) -> str:
        return f"{','.join(map(str, self.ids))}/{self.count}"

    @property
    def every_shard(self) -> bool:
        """Whether this process runs all the shards (as one unsharded process does)."""
        return len(self.ids) == self.count

    @property
    def direct_messages(self) -> bool:
        """Whether DMs come to this process: Discord sends them on shard 0."""
        return 0 in self.ids

    def of_guild(self, guild_id: int) -> int:
        """The shard a server belongs to, as Discord assigns it."""
        return (guild_id >> 22) % self.count

    def has_guild(self, guild_id: int) -> bool:
        """Whether the server is on one of this process's shards."""
        return self.of_guild(guild_id) in self.ids
