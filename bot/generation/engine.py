"""What the bot needs from an engine: the local ``Generator`` and the vLLM client (``VllmEngine``) both fit.

The answers, the loop's hot swap, ``/healthz`` and ``/metrics`` are written against
:class:`Engine`, so ``THUMBTUNE_ENGINE`` changes where text is generated and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bot.generation.decoding import SamplingParams
from bot.generation.status import EngineState, ReplicaState
from bot.generation.worker import Generation

__all__ = ["Engine", "EngineState", "ReplicaState"]


class Engine(Protocol):
    """The interface of :class:`~bot.generation.worker.Generator` that the bot relies on."""

    on_batch: Callable[[int], None] | None  # told the rows of each batch (or request), for metrics
    request_timeout_s: float

    @property
    def version(self) -> int: ...

    @property
    def source(self) -> str: ...

    @property
    def previous_version(self) -> int | None: ...

    @property
    def ranks_candidates(self) -> bool: ...

    def queued(self) -> int: ...

    def state(self) -> EngineState: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(
        self, prompt: str, params: SamplingParams, *, timeout_s: float | None = None, version: int | None = None
    ) -> Generation: ...

    async def swap(self, source: str | Path, version: int) -> None: ...

    async def hold_previous(self, source: str | Path, version: int) -> None: ...
