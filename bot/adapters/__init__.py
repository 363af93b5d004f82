"""One module or package per chat platform; each defines ``ADAPTER``, its :class:`bot.adapters.base.Adapter`.

A new platform is one new module (``shell.py``) or package (``slack/``, ``discord/``: one
concern a file) here: its name is the platform's name
(``THUMBTUNE_ADAPTER``, ``--adapter``, ``THUMBTUNE_ADMINS`` entries, ``thumbtune forget``).
:func:`bot.adapters.base.adapter_class` imports it when the bot starts on that platform.
"""

from __future__ import annotations

import pkgutil

# Every module and package here but the contract itself, found without importing any
# platform library, so the settings can name them before discord or slack_bolt loads.
PLATFORMS: tuple[str, ...] = tuple(
    sorted(
        module.name
        for module in pkgutil.iter_modules(__path__)
        if module.name != "base" and not module.name.startswith("_")
    )
)
