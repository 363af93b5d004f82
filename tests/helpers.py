"""Small test helpers: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.01):
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


def publish_copy(registry, model_dir, *, parent: int = 0, metrics=None, counts=None) -> int:
    """What a trainer on another host sharing the folder does: stage a model, then publish it."""
    import shutil

    with registry.staging() as folder:
        for item in model_dir.iterdir():
            shutil.copy(item, folder / item.name)
        return registry.publish(folder, parent=parent, metrics=metrics or {}, counts=counts or {}).version
