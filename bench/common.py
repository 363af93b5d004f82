"""Shared pieces of the benchmarks: a GPT-2 small shaped model on disk, a loop-lag ticker, stats."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from bot.cli import quiet_libraries
from bot.tinymodel import shipped_dialogues, train_tokenizer
from storage.repository import NewResponse, Repository


def write_gpt2_small_shape(folder: Path, *, seed: int = 0) -> Path:
    """GPT2Config() with random weights (no download) and a locally trained tokenizer.

    The tokenizer's vocabulary is smaller than the model's; ids it does not know are
    skipped when decoding, which does not matter for timing.
    """
    torch.manual_seed(seed)
    config = GPT2Config()
    tokenizer = train_tokenizer(shipped_dialogues(), 1024)
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def record_voted_answer(
    repository: Repository, *, question: str, context: str, answer: str, liked: bool, author: str = "asker"
) -> None:
    """One answer of version 0 to ``question``, liked or disliked by two simulated people."""
    stored = await repository.record_answer(
        platform="shell",
        channel="bench",
        author=author,
        text=question,
        context=context,
        responses=[NewResponse(text=answer, model_version=0, temperature=0.9, top_p=0.95, max_new_tokens=24)],
    )
    for voter in ("a", "b"):
        await repository.record_vote(
            response_id=stored.response_ids[0],
            voter=voter,
            emoji="👍" if liked else "👎",
            reward=1.0 if liked else -1.0,
        )


class LoopLag:
    """Measures how late the event loop wakes a 1 ms sleeper: the lag people would feel."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.lags.append(max(0.0, time.perf_counter() - started - self.interval_s))

    def start(self) -> None:
        self.lags.clear()
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return {"max_ms": max(self.lags, default=0.0) * 1000, "p99_ms": percentile(self.lags, 99) * 1000}


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def seconds_each(repeats: int, run: Callable[[], object]) -> list[float]:
    """How long each of ``repeats`` runs took, in seconds."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return seconds


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The shortest of a few timed runs, in seconds."""
    return min(seconds_each(repeats, run))


def read_bandwidth_bytes_per_s(buffer: torch.Tensor, repeats: int = 3) -> float:
    """Single-thread read bandwidth: sum a buffer far larger than the caches, best of a few."""
    return buffer.numel() * buffer.element_size() / best_of(repeats, buffer.sum)


def quick_args(
    doc: str, quick_help: str, more: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """A benchmark's command line (``--quick``, and what ``more`` adds) and set-up: warnings
    only, one torch thread."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if more is not None:
        more(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_libraries()
    torch.set_num_threads(1)
    return args


def emit(result: Mapping[str, object]) -> None:
    """Benchmarks print exactly one JSON object on their last line."""
    print(json.dumps(result, sort_keys=True))
