"""One module per chat platform; each defines ``ADAPTER``, its :class:`bot.adapters.base.Adapter`.

A new platform is one new module here: the module's name is the platform's name
(``THUMBTUNE_ADAPTER``, ``--adapter``, ``THUMBTUNE_ADMINS`` entries, ``thumbtune forget``).
:func:`bot.adapters.base.adapter_class` imports it when the bot starts on that platform.
"""

from __future__ import annotations

import pkgutil

# Every module of this package but the contract itself, found without importing any
# platform library, so the settings can name them before discord or slack_bolt loads.
PLATFORMS: tuple[str, ...] = tuple(
    sorted(
        module.name
        for module in pkgutil.iter_modules(__path__)
        if module.name != "base" and not module.name.startswith("_")
    )
)
