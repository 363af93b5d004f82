"""Small test helpers: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from subprocess import CompletedProcess
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from storage.registry import ModelRegistry
    from storage.repository import Repository, ResponseRef
    from storage.reward import RewardHead
    from trainer.dataset import Example

T = TypeVar("T")
REWARD_QUESTIONS = ["hello", "how are you", "what should I eat", "tell me something nice", "do you like cats"]


# The first truthy value ``predicate`` gave (awaited, for an async one), never None.
@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T | None]], *, timeout: float = ..., interval: float = ...
) -> T: ...
@overload
async def wait_for(predicate: Callable[[], T | None], *, timeout: float = ..., interval: float = ...) -> T: ...
async def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.01) -> object:
    """Wait until ``predicate()`` (sync or async) is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def publish_copy(
    registry: ModelRegistry,
    model_dir: Path,
    *,
    parent: int = 0,
    metrics: Mapping[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
) -> int:
    """What a trainer on another host sharing the folder does: stage a model, then publish it."""
    import shutil

    with registry.staging() as folder:
        for item in model_dir.iterdir():
            shutil.copy(item, folder / item.name)
        return registry.publish(folder, parent=parent, metrics=metrics or {}, counts=counts or {}).version


async def stored_response(repository: Repository, response_id: int) -> ResponseRef | None:
    """The stored answer ``response_id`` as the service sees answers (None when deleted), read
    with SQL: the product looks answers up by their posted message, tests by their id."""
    from storage.repository import ResponseRef

    async with repository.database.reading() as db:
        cursor = await db.execute(
            "SELECT id, prompt_id, candidate, model_version, flagged FROM responses WHERE id = ?", (response_id,)
        )
        row = await cursor.fetchone()
    return None if row is None else ResponseRef(row[0], row[1], row[2], row[3], bool(row[4]))


def thumbtune(args: list[str], env: dict[str, str], *, stdin: str = "", timeout: float = 180) -> CompletedProcess[str]:
    """``python -m bot ARGS`` with ``env`` over this process's environment without any
    thumbtune or platform setting of the developer's own; the finished process."""
    import os
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if not k.startswith(("THUMBTUNE_", "SLACK_", "DISCORD_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=stdin, env=full, capture_output=True, text=True, timeout=timeout
    )


def reward_examples(count: int, offset: int = 0) -> list[Example]:
    """Votes a reward head can learn: liked answers talk about warm things; disliked ones do not."""
    from storage.dialogue import render_prompt
    from trainer.dataset import Example

    out = []
    for i in range(offset, offset + count):
        prompt = render_prompt(REWARD_QUESTIONS[i % len(REWARD_QUESTIONS)])
        liked = i % 2 == 0
        text = f" It is warm and sunny, a warm day {i}." if liked else f" I do not know, maybe {i}."
        out.append(Example(prompt, text, liked, f"g{i}"))
    return out


def with_ranking_head(model_dir: Path, folder: Path) -> tuple[Path, RewardHead]:
    """A copy of ``model_dir`` in ``folder`` with a reward head fitted on :func:`reward_examples`,
    kept as ranking (as the trainer keeps a head with held-out evidence)."""
    import dataclasses
    import shutil

    import torch

    from storage.reward import RewardHead
    from trainer.models import load_causal_lm
    from trainer.reward import fit_reward

    shutil.copytree(model_dir, folder)
    model, tokenizer = load_causal_lm(folder, device=torch.device("cpu"))
    head = fit_reward(
        model, tokenizer, reward_examples(40), reward_examples(20, offset=40), min_examples=5, samples=100, seed=0
    )
    assert head is not None and RewardHead.evidence(head.auc_interval)
    head = dataclasses.replace(head, ranks=True)
    head.save(folder)
    return folder, head
