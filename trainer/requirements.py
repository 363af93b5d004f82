"""What training needs beyond the bot: the ``train`` extra, and one clear message when it is missing.

``pip install thumbtune`` runs the bot (chat, feedback, generation, stats); training
(TRL's KTO, LoRA, the eval gate's chrF) and the ``hf`` export need
``pip install 'thumbtune[train]'``. Light on purpose: the bot imports it to say so.
"""

from __future__ import annotations

import importlib.util

# Import names of the train extra's packages (pyproject.toml, [project.optional-dependencies] train).
TRAIN_PACKAGES = ("trl", "peft", "datasets", "accelerate", "sacrebleu")
INSTALL_HINT = "pip install 'thumbtune[train]'"


def missing(packages: tuple[str, ...] = TRAIN_PACKAGES) -> list[str]:
    """The packages of ``packages`` this interpreter cannot import."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def missing_extra(what: str = "training", packages: tuple[str, ...] = TRAIN_PACKAGES) -> str | None:
    """A one-line explanation when ``what`` cannot run here for want of the train extra; else None."""
    absent = missing(packages)
    if not absent:
        return None
    return f"{what} needs the train extra, which is not installed here (missing: {', '.join(absent)}): {INSTALL_HINT}"
