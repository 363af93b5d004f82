"""One module per chat platform; each defines ``ADAPTER``, its :class:`bot.adapters.base.Adapter`.

A new platform is one new module here plus its name in :data:`PLATFORMS` (and, for
``THUMBTUNE_ADAPTER``, in the setting's list of choices in bot/settings.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.adapters.base import Adapter

PLATFORMS: tuple[str, ...] = ("shell", "slack", "discord")


def adapter_class(platform: str) -> type[Adapter]:
    """The adapter of one platform; its module (and platform library) is imported only now."""
    if platform not in PLATFORMS:
        raise ValueError(f"no adapter for {platform!r}; there are {', '.join(PLATFORMS)}")
    adapter: type[Adapter] = importlib.import_module(f"bot.adapters.{platform}").ADAPTER
    return adapter
