"""Progress for people at a terminal: bars only there, a percentage in the log everywhere.

Light on purpose (standard library only): the bot uses it for the model download too.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


def show_bars(stream: TextIO | None = None) -> bool:
    """Whether to draw progress bars on ``stream`` (stderr): only on a terminal, never in CI
    (``CI`` set) or on a dumb terminal, so logs and pipes get no bar lines."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False
    return tty and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def enable_download_bars() -> None:
    """The Hugging Face Hub's download bars, where :func:`show_bars` says so (transformers'
    own loading bars stay off: they are noise for a model already on disk)."""
    if show_bars():
        from huggingface_hub.utils import enable_progress_bars

        enable_progress_bars()


def percent_steps(total: int, parts: int = 10) -> set[int]:
    """The steps at which a run of ``total`` steps logs its progress: the first, about every
    ``parts``-th of the way, and the last."""
    if total <= 0:
        return set()
    return {1, total} | {max(1, round(total * part / parts)) for part in range(1, parts)}
