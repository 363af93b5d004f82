"""`python -m bench.reload [--quick]`: hot swaps while requests keep arriving.

Clients keep asking the Generator while it swaps between two tiny models 5 times.
Reports failed requests (must be 0), the event loop's lag during the swaps, and the
time from each `swap()` call to the first answer tagged with the new version.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import LoopLag, emit, median, quick_args
from bot.generation import GenerationError, Generator, SamplingParams
from bot.tinymodel import TinyModelSpec, make_tiny_model
from storage.dialogue import render_prompt


async def run(args: argparse.Namespace, folders: list[Path]) -> dict[str, Any]:
    swaps = 5
    clients = 4 if args.quick else 8
    params = SamplingParams(max_new_tokens=16 if args.quick else 32)
    first_new: dict[int, float] = {}
    answered: list[tuple[int, float]] = []
    failures: list[str] = []
    stop = asyncio.Event()
    new_answer = asyncio.Event()  # set by the first answer of each version

    async with Generator(source=folders[0], version=0, batch_window_s=0.01, queue_size=64) as generator:

        async def client(index: int) -> None:
            turn = 0
            while not stop.is_set():
                turn += 1
                try:
                    result = await generator.generate(render_prompt(f"client {index} turn {turn}"), params)
                except GenerationError as exc:
                    failures.append(str(exc))
                    continue
                now = time.perf_counter()
                answered.append((result.model_version, now))
                if result.model_version not in first_new:
                    first_new[result.model_version] = now
                    new_answer.set()

        lag = LoopLag()
        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.sleep(0.5)  # load is flowing before the first swap
        lag.start()
        swap_started: dict[int, float] = {}
        swap_seconds: list[float] = []
        for version in range(1, swaps + 1):
            swap_started[version] = time.perf_counter()
            await generator.swap(folders[version % len(folders)], version)
            swap_seconds.append(time.perf_counter() - swap_started[version])
            # Wait until an answer from the new version arrived, then let load run a bit.
            await new_answer.wait()
            new_answer.clear()
            await asyncio.sleep(0.2)
        lags = await lag.stop()
        stop.set()
        await asyncio.gather(*tasks)

    to_first = [first_new[v] - swap_started[v] for v in range(1, swaps + 1)]
    return {
        "swaps": swaps,
        "clients": clients,
        "requests_answered": len(answered),
        "failed_requests": len(failures),
        "failures": failures[:5],
        "loop_lag_max_ms": round(lags["max_ms"], 2),
        "loop_lag_p99_ms": round(lags["p99_ms"], 2),
        "swap_call_s_median": round(median(swap_seconds), 3),
        "swap_to_first_new_answer_s": round(max(to_first), 3),
        "swap_to_first_new_answer_s_median": round(median(to_first), 3),
        "final_version": max(v for v, _ in answered),
        "quick": args.quick,
    }


def main() -> None:
    args = quick_args(__doc__, "fewer clients and shorter answers")
    with tempfile.TemporaryDirectory() as tmp:
        steps = 60 if args.quick else 300
        folders = [
            make_tiny_model(Path(tmp) / f"tiny-{seed}", TinyModelSpec(seed=seed, steps=steps)) for seed in (0, 1)
        ]
        emit(asyncio.run(run(args, folders)))


if __name__ == "__main__":
    main()
