"""`python -m bench.stats [--quick]`: the statistics query on a database with a million votes.

Builds a database through the real migrations (200,000 answers over 10 model versions,
1,000,000 votes from 5,000 people), then times `thumbtune stats`' report (per-version
approval with Wilson intervals and votes per day). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.common import emit, median
from bot.stats import build_report
from storage.database import Database
from storage.repository import Repository


def fill(path: Path, *, answers: int, votes: int, versions: int, people: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    now = time.time()
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            "INSERT INTO prompts (id, platform, channel, author, text, context, created_at)"
            " VALUES (?, 'slack', 'C1', ?, 'q', '', ?)",
            ((i, f"p{rng.randrange(people)}", now - (answers - i) * 10) for i in range(1, answers + 1)),
        )
        connection.executemany(
            "INSERT INTO responses (id, prompt_id, candidate, text, model_version, temperature, top_p,"
            " max_new_tokens, created_at) VALUES (?, ?, 0, 'a', ?, 0.9, 0.95, 48, ?)",
            ((i, i, (i - 1) * versions // answers, now - (answers - i) * 10) for i in range(1, answers + 1)),
        )
        seen: set[tuple[int, int]] = set()
        rows: list[tuple[int, str, str, float, float, int]] = []
        while len(rows) < votes:
            response, voter = rng.randrange(1, answers + 1), rng.randrange(people)
            if (response, voter) in seen:
                continue
            seen.add((response, voter))
            up = rng.random() < 0.4 + 0.3 * ((response - 1) * versions // answers) / versions
            version = (response - 1) * versions // answers
            rows.append(
                (
                    response,
                    f"p{voter}",
                    "+1" if up else "-1",
                    1.0 if up else -1.0,
                    now - rng.random() * 30 * 86400,
                    version,
                )
            )
        # Through the same triggers as the bot's own writes, so the counters are real.
        connection.executemany(
            "INSERT INTO votes (response_id, voter, emoji, reward, created_at, model_version)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    connection.execute("ANALYZE")
    connection.close()


async def create_schema(path: Path) -> None:
    async with await Database.open(path):
        pass


async def measure(path: Path, repeats: int) -> list[float]:
    async with await Database.open(path) as database:
        repository = Repository(database)
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            report = await build_report(repository)
            timings.append(time.perf_counter() - started)
        assert report.versions
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 votes instead of 1,000,000")
    args = parser.parse_args()
    votes = 100_000 if args.quick else 1_000_000
    answers = votes // 5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stats.db"
        asyncio.run(create_schema(path))
        started = time.perf_counter()
        fill(path, answers=answers, votes=votes, versions=10, people=5000)
        built = time.perf_counter() - started
        timings = asyncio.run(measure(path, repeats=3))
    emit(
        {
            "votes": votes,
            "answers": answers,
            "versions": 10,
            "build_db_s": round(built, 1),
            "stats_report_s": round(median(timings), 3),
            "stats_report_s_max": round(max(timings), 3),
            "quick": args.quick,
        }
    )


if __name__ == "__main__":
    main()
