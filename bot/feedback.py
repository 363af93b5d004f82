"""Reactions -> rewards: the configurable emoji table (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Mapping

_SKIN_TONE_NAME = re.compile(r"::skin-tone-\d+$")
# Fitzpatrick modifiers and the emoji variation selector do not change meaning.
_MODIFIERS = dict.fromkeys([*range(0x1F3FB, 0x1F400), 0xFE0F, 0xFE0E])
# One emoji, one name, and this is the one table of names: what Slack calls `+1` or
# `thumbsup` is the 👍 that Discord and the shell send, so one person's `+1` and `thumbsup`
# on one answer are one vote, and a setting that names 👍 names all three. (Stored votes
# keep the name they were recorded with: a new alias of a rating emoji needs a migration
# such as 0005; flags are not stored by name.)
ALIASES: dict[str, str] = {
    "+1": "👍",
    "thumbsup": "👍",
    "-1": "👎",
    "thumbsdown": "👎",
    "triangular_flag_on_post": "🚩",
}


def normalize_emoji(emoji: str) -> str:
    """``:+1::skin-tone-3:`` -> ``👍``; ``👍🏽`` -> ``👍``; ``thumbsdown`` -> ``👎``;
    other names are lower-cased."""
    name = emoji.strip()
    if len(name) > 2 and name.startswith(":") and name.endswith(":"):
        name = name[1:-1]
    name = _SKIN_TONE_NAME.sub("", name)
    name = name.translate(_MODIFIERS)
    name = name.lower() if name.isascii() else name
    return ALIASES.get(name, name)


class EmojiTable:
    """Maps an emoji, as any platform names it, to the reward it stands for."""

    def __init__(self, rewards: Mapping[str, float]) -> None:
        """Raises ValueError when two names of one emoji (``+1``, ``thumbsup``) differ in reward."""
        self._rewards: dict[str, float] = {}
        given: dict[str, str] = {}
        for name, value in rewards.items():
            canonical = normalize_emoji(name)
            if canonical in self._rewards and self._rewards[canonical] != float(value):
                raise ValueError(
                    f"{given[canonical]} and {name} are one emoji ({canonical}) with different rewards"
                    f" ({self._rewards[canonical]:g} and {float(value):g})"
                )
            self._rewards[canonical] = float(value)
            given[canonical] = name

    def reward(self, emoji: str) -> float | None:
        """The reward, or None for an emoji the table does not know."""
        return self.reward_named(normalize_emoji(emoji))

    def reward_named(self, name: str) -> float | None:
        """The reward of an emoji already in normal form (see :func:`normalize_emoji`)."""
        return self._rewards.get(name)

    def __contains__(self, emoji: str) -> bool:
        return self.reward(emoji) is not None
