"""The training backends, end to end: from "a run fires" to "the new version is serving".

For each backend (``local``: the trainer as a subprocess; ``ray``: a job on a local Ray
head started here, bench.ray_head) a fresh bot on the tiny model with the same seeded
votes runs one training run (``Loop.run_training``: snapshot, trainer, record, hot
swap), several times; the bytes that travel are measured on disk: the snapshot the bot
writes and the version the trainer publishes (weights and tokenizer).

    python -m bench.backends [--runs 3] [--answers 120] [--skip-ray]

Prints one JSON object: per backend the median and all seconds, bytes moved, and
``ray_over_local``, the ratio of the two medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import record_voted_answer
from bot.app import open_runtime
from bot.cli import quiet_libraries
from bot.settings import load_settings
from bot.tinymodel import make_tiny_model
from storage.repository import Repository
from trainer import snapshot


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


async def seed(repository: Repository, *, answers: int) -> None:
    """``answers`` lone prompts; two people like the answers with "apple" and dislike the rest."""
    for index in range(answers):
        liked = index % 4 == 0
        await record_voted_answer(
            repository,
            question=f"question {index}",
            context=f"User: question {index}\nBot:",
            answer="an apple a day" if liked else f"something else {index}",
            liked=liked,
            author=f"asker{index % 7}",
        )


async def one_run(env: dict[str, str], *, answers: int) -> dict[str, Any]:
    os.environ.update(env)
    settings = load_settings()
    async with open_runtime(settings) as runtime:
        await seed(runtime.repository, answers=answers)
        started = time.monotonic()
        outcome = await runtime.loop.run_training()
        seconds = time.monotonic() - started
        if outcome.version is None or outcome.serving != outcome.version:
            raise RuntimeError(f"the run did not go live: {outcome}")
        run_folder = Path(snapshot.run_uri(settings.artifacts_uri, outcome.run or 0))
        version_folder = runtime.loop.registry.get(outcome.version).path
        return {
            "seconds_to_serving": seconds,
            "snapshot_bytes": folder_bytes(run_folder) - (run_folder / snapshot.RESULT).stat().st_size,
            "result_bytes": (run_folder / snapshot.RESULT).stat().st_size,
            "version_bytes": folder_bytes(version_folder),
        }


def measure(base_env: dict[str, str], extra: dict[str, str], *, runs: int, answers: int) -> dict[str, Any]:
    results = []
    for index in range(runs):
        with tempfile.TemporaryDirectory(prefix="thumbtune-bench-") as data:
            env = {**base_env, **extra, "THUMBTUNE_DATA_DIR": data}
            results.append(asyncio.run(one_run(env, answers=answers)))
            logging.getLogger("bench").info("run %d: %.1f s", index + 1, results[-1]["seconds_to_serving"])
    seconds = [result["seconds_to_serving"] for result in results]
    return {
        "seconds_to_serving_median": round(statistics.median(seconds), 2),
        "seconds_to_serving": [round(value, 2) for value in seconds],
        "snapshot_bytes": results[-1]["snapshot_bytes"],
        "result_bytes": results[-1]["result_bytes"],
        "version_bytes": results[-1]["version_bytes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per backend (median reported)")
    parser.add_argument("--answers", type=int, default=120, help="voted answers in the database")
    parser.add_argument("--skip-ray", action="store_true", help="measure the local backend only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("bench").setLevel(logging.INFO)
    quiet_libraries()

    with tempfile.TemporaryDirectory(prefix="thumbtune-bench-model-") as models:
        tiny = make_tiny_model(Path(models) / "tiny")
        base_env = {
            "THUMBTUNE_MODEL": str(tiny),
            "THUMBTUNE_TORCH_THREADS": "1",
            "THUMBTUNE_TRAIN_EVERY_MINUTES": "0",
            "THUMBTUNE_TRAIN_EPOCHS": "1",
            "THUMBTUNE_LOG_LEVEL": "WARNING",
            "THUMBTUNE_DASHBOARD_PORT": "0",
        }
        report: dict[str, Any] = {
            "model": "tiny (2 layers, 64 wide, vocab 1024)",
            "answers_voted": args.answers,
            "runs": args.runs,
            "local": measure(base_env, {"THUMBTUNE_TRAIN_BACKEND": "local"}, runs=args.runs, answers=args.answers),
        }
        if not args.skip_ray:
            from bench.ray_head import local_ray_head

            with local_ray_head() as address:
                ray = {
                    "THUMBTUNE_TRAIN_BACKEND": "ray",
                    "THUMBTUNE_RAY_ADDRESS": address,
                    "THUMBTUNE_TRAIN_LAUNCHER": sys.executable,  # the cluster's python is this one
                }
                report["ray"] = measure(base_env, ray, runs=args.runs, answers=args.answers)
            report["ray_over_local"] = round(
                report["ray"]["seconds_to_serving_median"] / report["local"]["seconds_to_serving_median"], 2
            )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
