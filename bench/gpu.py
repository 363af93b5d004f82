"""`python -m bench.gpu`: the GPU path in one command (generation, one training run, a hot swap).

On a machine with CUDA, with the GPT-2 small shape (``GPT2Config()``, random weights, no
download) and a locally trained tokenizer:

- **generation**: the Generator (bf16 where supported, else fp16) answering 8 and 32
  concurrent prompts of 48 new tokens: tokens/s, p50/p95 latency;
- **training**: one full run through the trainer (snapshot → KTO → eval gate → registry)
  on 64 voted answers, on cuda: seconds, steps, s/step, the gate's verdict;
- **hot swap**: ``Generator.swap`` to the trained version while 8 clients keep asking:
  failed requests (must be 0) and the time from the swap call to the first answer of
  the new version.

Prints one JSON object. Without CUDA it says so and exits 2 (nothing to measure here).
Each part is timed and a failing part is reported with its error, so one run tells all.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import median, percentile, write_gpt2_small_shape
from bot.generation import GenerationError, Generator, SamplingParams
from storage.database import Database
from storage.dialogue import render_prompt
from storage.repository import NewResponse, Repository


def part(report: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    started = time.monotonic()
    try:
        report[name] = work()
    except Exception as exc:  # report it and go on: one run of this script should tell everything
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    report[f"{name}_wall_s"] = round(time.monotonic() - started, 1)


async def generation(folder: Path) -> dict[str, Any]:
    params = SamplingParams(max_new_tokens=48)
    out: dict[str, Any] = {}
    async with Generator(source=folder, device="cuda", batch_window_s=0.01, max_batch_rows=32) as generator:
        await generator.generate(render_prompt("warm up"), params)

        async def one(index: int, latencies: list[float]) -> int:
            started = time.perf_counter()
            result = await generator.generate(render_prompt(f"question number {index}"), params)
            latencies.append(time.perf_counter() - started)
            return result.new_tokens

        for n in (8, 32):
            latencies: list[float] = []
            started = time.perf_counter()
            tokens = sum(await asyncio.gather(*(one(i, latencies) for i in range(n))))
            seconds = time.perf_counter() - started
            out[f"tokens_per_s_{n}"] = round(tokens / seconds, 1)
            out[f"latency_p50_s_{n}"] = round(median(latencies), 3)
            out[f"latency_p95_s_{n}"] = round(percentile(latencies, 95), 3)
    return out


async def training(folder: Path, work: Path) -> dict[str, Any]:
    from bot.snapshots import prepare
    from trainer import snapshot
    from trainer.config import DataConfig, GateConfig, TrainConfig
    from trainer.job import RunOptions, run

    async with await Database.open(work / "bench.db") as database:
        repository = Repository(database)
        for index in range(64):
            liked = index % 3 == 0
            stored = await repository.record_answer(
                platform="shell",
                channel="bench",
                author="asker",
                text=f"question {index}",
                context=render_prompt(f"question {index}"),
                responses=[
                    NewResponse(
                        text="an apple a day" if liked else f"no idea {index}",
                        model_version=0,
                        temperature=0.9,
                        top_p=0.95,
                        max_new_tokens=24,
                    )
                ],
            )
            await repository.record_vote(
                response_id=stored.response_ids[0], voter="v", emoji="👍" if liked else "👎", reward=1 if liked else -1
            )
        prepared = await prepare(repository, DataConfig(), run=1, parent=0, base_model=str(folder))
    uri = snapshot.run_uri(str(work / "artifacts"), 1)
    snapshot.write(uri, prepared.manifest, prepared.dataset)
    started = time.monotonic()
    result = await asyncio.to_thread(
        run,
        RunOptions(snapshot=uri, registry=str(work / "models"), train=TrainConfig(device="cuda"), gate=GateConfig()),
    )
    return {
        "seconds": round(time.monotonic() - started, 1),
        "status": result.status,
        "reason": result.reason,
        "train_steps": result.metrics.get("train_steps"),
        "seconds_per_step": result.metrics.get("seconds_per_step"),
        "examples_per_s": result.metrics.get("examples_per_s"),
        "version_folder": str(work / "models" / "versions" / "0001"),
    }


async def hot_swap(first: Path, second: Path) -> dict[str, Any]:
    params = SamplingParams(max_new_tokens=24)
    failures: list[str] = []
    first_new: list[float] = []
    new_version_answered = asyncio.Event()
    stop = asyncio.Event()
    async with Generator(source=first, version=0, device="cuda", batch_window_s=0.01) as generator:

        async def client(index: int) -> None:
            while not stop.is_set():
                try:
                    result = await generator.generate(render_prompt(f"client {index}"), params)
                except GenerationError as exc:
                    failures.append(str(exc))
                    continue
                if result.model_version == 1 and not first_new:
                    first_new.append(time.perf_counter())
                    new_version_answered.set()

        clients = [asyncio.create_task(client(i)) for i in range(8)]
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        await generator.swap(second, 1)
        swap_call = time.perf_counter() - started
        await new_version_answered.wait()
        stop.set()
        await asyncio.gather(*clients)
    return {
        "failed_requests": len(failures),
        "swap_call_s": round(swap_call, 3),
        "swap_to_first_new_answer_s": round(first_new[0] - started, 3),
    }


def main() -> int:
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device: run this on a machine with a GPU"}))
        return 2
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "bf16": torch.cuda.is_bf16_supported(),
        "model": "GPT2Config() random weights",
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = write_gpt2_small_shape(work / "gpt2-small-shape")
        part(report, "generation", lambda: asyncio.run(generation(folder)))
        part(report, "training", lambda: asyncio.run(training(folder, work)))
        trained = report["training"].get("version_folder") if isinstance(report["training"], dict) else None
        if trained and Path(trained).is_dir():
            part(report, "hot_swap", lambda: asyncio.run(hot_swap(folder, Path(trained))))
        report["max_memory_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
