"""Chat commands: `stats` for everyone; `retrain`, `models`, `rollback [VERSION]` for admins.

A message to the bot whose whole text is one of these runs the command instead of
being answered by the model. The admin actions are provided by the running loop
(bot/loop.py), so the service itself never trains or loads models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

_COMMAND = re.compile(r"(?i)^\s*(stats|models|retrain|rollback)(?:\s+v?(\d+))?\s*[.!]?\s*$")


@dataclass(frozen=True)
class Command:
    name: str
    version: int | None = None


def parse_command(text: str) -> Command | None:
    """The command a message asks for, or None for an ordinary prompt."""
    match = _COMMAND.match(text)
    if not match:
        return None
    name, version = match.group(1).lower(), match.group(2)
    if version is not None and name != "rollback":
        return None  # "stats 3" is a question, not a command
    return Command(name=name, version=int(version) if version is not None else None)


class AdminActions(Protocol):
    """What admins can ask the running bot to do (implemented by bot.loop.Loop)."""

    async def retrain(self) -> str: ...

    async def models(self) -> str: ...

    async def rollback(self, version: int | None) -> str: ...
