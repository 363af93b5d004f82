"""`python -m bench.dashboard [--quick]`: the dashboard's index page and ``/metrics`` with a million votes.

Builds a database through the real migrations (200,000 answers over 10 model versions,
1,000,000 👍/👎 votes from 5,000 people, as bench.stats does, plus 2,000 head-to-head
verdicts between neighbouring versions) and a registry of 10 versions, serves them with
the dashboard's own server (bot.web, as `thumbtune dashboard` does) on a loopback port,
and times whole page loads over real HTTP, request to last byte. Prints one JSON object:
median and max of the index page (after one warm-up load) and of ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import emit, median
from bench.ray_head import free_port
from bench.stats import create_schema, fill
from bot.metrics import Metrics
from bot.web import WebServer
from storage.database import Database
from storage.registry import ModelRegistry
from storage.repository import Repository

VERSIONS = 10


def add_comparisons(path: Path, *, verdicts: int, versions: int, seed: int = 0) -> None:
    """Compare-mode prompts with one candidate from each of two neighbouring versions, one verdict each."""
    rng = random.Random(seed)
    now = time.time()
    connection = sqlite3.connect(path)
    with connection:
        first_prompt = int(connection.execute("SELECT coalesce(max(id), 0) + 1 FROM prompts").fetchone()[0])
        for i in range(verdicts):
            prompt = first_prompt + i
            older = rng.randrange(versions - 1)
            at = now - rng.random() * 30 * 86400
            connection.execute(
                "INSERT INTO prompts (id, platform, channel, author, text, context, created_at, mode)"
                " VALUES (?, 'slack', 'C1', ?, 'which is better', '', ?, 'compare')",
                (prompt, f"p{rng.randrange(5000)}", at),
            )
            ids = []
            for candidate, version in enumerate((older, older + 1)):
                cursor = connection.execute(
                    "INSERT INTO responses (prompt_id, candidate, text, model_version, temperature, top_p,"
                    " max_new_tokens, created_at) VALUES (?, ?, 'a', ?, 0.9, 0.95, 48, ?)",
                    (prompt, candidate, version, at),
                )
                ids.append(cursor.lastrowid)
            emoji = "2️⃣" if rng.random() < 0.6 else "1️⃣"  # the newer version wins 60 %
            for response in ids:
                connection.execute(
                    "INSERT INTO votes (response_id, voter, emoji, reward, created_at, comparison)"
                    " VALUES (?, ?, ?, 0, ?, 1)",
                    (response, f"p{rng.randrange(5000)}", emoji, at),
                )
    connection.close()


def fill_registry(root: Path, versions: int) -> ModelRegistry:
    """``versions`` published versions (metadata and a stand-in weights file: pages never load them)."""
    registry = ModelRegistry(root, keep=versions)
    for number in range(1, versions + 1):
        with registry.staging() as folder:
            (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
            registry.publish(
                folder,
                parent=number - 1,
                metrics={"perplexity": 10.0 - number / 10, "distinct_2": 0.7},
                counts={"train_examples": 1000 * number},
            )
    return registry


async def measure(db: Path, registry: ModelRegistry, *, loads: int, scrapes: int) -> dict[str, list[float]]:
    async with await Database.open(db) as database:
        server = WebServer(
            database=database,
            repository=Repository(database),
            registry=registry,
            metrics=Metrics(),
            host="127.0.0.1",
            port=free_port(),
            token=None,
        )
        await server.start()
        timings: dict[str, list[float]] = {"index": [], "metrics": []}
        size = 0
        try:
            async with aiohttp.ClientSession() as session:
                for path, count in (("/", loads + 1), ("/metrics", scrapes + 1)):
                    for i in range(count):
                        started = time.perf_counter()
                        async with session.get(server.url + path) as response:
                            body = await response.read()
                            assert response.status == 200, response.status
                        if i:  # the first load warms SQLite's page cache
                            timings["index" if path == "/" else "metrics"].append(time.perf_counter() - started)
                        if path == "/":
                            size = len(body)
        finally:
            await server.stop()
        timings["size"] = [size]
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 votes instead of 1,000,000")
    args = parser.parse_args()
    votes = 100_000 if args.quick else 1_000_000
    answers = votes // 5
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "dashboard.db"
        asyncio.run(create_schema(db))
        started = time.perf_counter()
        fill(db, answers=answers, votes=votes, versions=VERSIONS, people=5000)
        add_comparisons(db, verdicts=2000, versions=VERSIONS)
        built = time.perf_counter() - started
        registry = fill_registry(Path(tmp) / "models", VERSIONS)
        timings = asyncio.run(measure(db, registry, loads=9, scrapes=50))
    emit(
        {
            "votes": votes,
            "comparisons": 2000,
            "versions": VERSIONS,
            "build_db_s": round(built, 1),
            "index_ms_median": round(median(timings["index"]) * 1000, 1),
            "index_ms_max": round(max(timings["index"]) * 1000, 1),
            "index_bytes": int(timings["size"][0]),
            "metrics_ms_median": round(median(timings["metrics"]) * 1000, 2),
            "metrics_ms_max": round(max(timings["metrics"]) * 1000, 2),
            "quick": args.quick,
        }
    )


if __name__ == "__main__":
    main()
