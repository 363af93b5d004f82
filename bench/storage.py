"""`python -m bench.storage [--quick] [--votes N]`: the storage operations on SQLite and on
PostgreSQL, and vote events per second through 1 and 3 bot processes on PostgreSQL.

Each backend gets the same database, built through the real migrations and the
repository's own connection (counted as `thumbtune db copy` counts them): answers over
10 model versions and ``--votes`` votes (1,000,000 by default; ``--quick`` 50,000) from
5,000 people. Then, per operation, median and p95 over repeated calls:

- ``store_prompt``: ``record_answer`` (a prompt and its answer, one transaction);
- ``record_vote``: ``record_vote`` with its platform event claimed, the daily cap checked;
- ``stats``: ``bot.stats.build_report`` (per-version approval, votes per day, head-to-head);
- ``dashboard_index``: the dashboard index's data (``bot.dashboard.index_data``).

Events per second: N processes (1, then 3), each with its own connection, handle vote
events as a replica does (look the answer up by its message, then ``record_vote`` with
the event claimed), all at once on one PostgreSQL; SQLite with 1 process for reference.

PostgreSQL is a throwaway local server from Debian's binaries (bench/pgserver.py) with
its default durability (fsync on); SQLite is a file in a temp folder with the bot's
pragmas. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit, median
from bench.pgserver import PostgresServer
from bot.dashboard import index_data
from bot.stats import build_report
from storage.database import Database
from storage.registry import ModelRegistry
from storage.repository import NewResponse, Repository

VERSIONS = 10
PEOPLE = 5000
_SAMPLING = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 48}


async def fill(database: Database, *, answers: int, votes: int, seed: int = 0) -> None:
    """``answers`` prompts with one answer each (posted: a message key), ``votes`` votes."""
    rng = random.Random(seed)
    now = time.time()
    async with database.transaction() as db:
        await db.executemany(
            "INSERT INTO prompts (id, platform, channel, author, text, context, created_at)"
            " VALUES (?, 'slack', 'C1', ?, 'q', '', ?)",
            [(i, f"p{rng.randrange(PEOPLE)}", now - (answers - i) * 10) for i in range(1, answers + 1)],
        )
        await db.executemany(
            "INSERT INTO responses (id, prompt_id, candidate, text, model_version, temperature, top_p,"
            " max_new_tokens, created_at, message_key) VALUES (?, ?, 0, 'a', ?, 0.9, 0.95, 48, ?, ?)",
            [
                (i, i, (i - 1) * VERSIONS // answers, now - (answers - i) * 10, f"slack:C1:{i}.0")
                for i in range(1, answers + 1)
            ],
        )
        for table in ("prompts", "responses"):
            await database.after_bulk_insert(db, table)
    seen: set[tuple[int, int]] = set()
    rows: list[tuple[Any, ...]] = []
    while len(rows) < votes:
        response, voter = rng.randrange(1, answers + 1), rng.randrange(PEOPLE)
        if (response, voter) in seen:
            continue
        seen.add((response, voter))
        version = (response - 1) * VERSIONS // answers
        up = rng.random() < 0.4 + 0.3 * version / VERSIONS
        reward = 1.0 if up else -1.0
        rows.append((response, f"p{voter}", "👍" if up else "👎", reward, now - rng.random() * 30 * 86400, version))
    async with database.transaction() as db, database.bulk_loading(db):  # counted as a copy counts them
        await db.executemany(
            "INSERT INTO votes (response_id, voter, emoji, reward, created_at, model_version)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        await database.after_bulk_insert(db, "votes")
    async with database.reading() as db:
        await db.execute("ANALYZE")


def _summary(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(median(ordered) * 1000, 3), "p95_ms": round(p95 * 1000, 3), "n": len(ordered)}


async def time_operations(target: Path | str, *, answers: int, registry: ModelRegistry, repeats: int) -> dict[str, Any]:
    async with await Database.open(target) as database:
        repository = Repository(database)
        rng = random.Random(1)
        store, vote, stats, index = [], [], [], []
        for i in range(repeats * 10):
            started = time.perf_counter()
            await repository.record_answer(
                platform="slack", channel="C2", author=f"p{i % PEOPLE}", text="a new question", context="",
                responses=[NewResponse(text="an answer", model_version=VERSIONS - 1, **_SAMPLING)],  # type: ignore[arg-type]
            )  # fmt: skip
            store.append(time.perf_counter() - started)
            started = time.perf_counter()
            await repository.record_vote(
                response_id=rng.randrange(1, answers + 1), voter=f"new{i}", emoji="👍", reward=1.0,
                event=("slack", f"bench-{i}"), daily_cap=500,
            )  # fmt: skip
            vote.append(time.perf_counter() - started)
        for _ in range(repeats + 1):
            started = time.perf_counter()
            await build_report(repository)
            stats.append(time.perf_counter() - started)
            started = time.perf_counter()
            await index_data(repository, registry)
            index.append(time.perf_counter() - started)
    return {
        "store_prompt": _summary(store),
        "record_vote": _summary(vote),
        "stats": _summary(stats[1:]),  # the first warms the cache
        "dashboard_index": _summary(index[1:]),
    }


def _replica(target: str, *, first: int, count: int, answers: int, ready: Any, go: Any, done: Any) -> None:
    async def work() -> None:
        async with await Database.open(target) as database:
            repository = Repository(database)
            ready.put(1)
            go.wait()
            started = time.perf_counter()
            for event in range(first, first + count):
                found = await repository.response_by_message(f"slack:C1:{event % answers + 1}.0")
                assert found is not None
                await repository.record_vote(
                    response_id=found.response_id, voter=f"e{event}", emoji="👍", reward=1.0,
                    event=("slack", f"flow-{event}"), daily_cap=500,
                )  # fmt: skip
            done.put(time.perf_counter() - started)

    asyncio.run(work())


def events_per_second(target: str, *, processes: int, events: int, answers: int, offset: int) -> float:
    """Vote events handled per second by ``processes`` processes together (``events`` in all)."""
    context = multiprocessing.get_context("spawn")
    ready, done, go = context.Queue(), context.Queue(), context.Event()
    share = events // processes
    workers = [
        context.Process(
            target=_replica,
            args=(target,),
            kwargs={
                "first": offset + i * share,
                "count": share,
                "answers": answers,
                "ready": ready,
                "go": go,
                "done": done,
            },
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    started = time.perf_counter()
    go.set()
    for _ in workers:
        done.get(timeout=600)
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    return share * processes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 votes instead of 1,000,000")
    parser.add_argument("--votes", type=int, help="votes in the database (default 1,000,000)")
    parser.add_argument("--events", type=int, default=3000, help="vote events in the events/s runs")
    args = parser.parse_args()
    votes = args.votes or (50_000 if args.quick else 1_000_000)
    answers = votes // 5
    repeats = 5 if args.quick else 10
    result: dict[str, Any] = {"votes": votes, "answers": answers, "quick": args.quick}
    server = PostgresServer.start(durable=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            registry = ModelRegistry(Path(tmp) / "registry")
            targets: dict[str, Path | str] = {"sqlite": Path(tmp) / "bench.db", "postgresql": server.new_database()}
            for name, target in targets.items():

                async def build(target: Path | str = target) -> None:
                    async with await Database.open(target) as database:
                        await fill(database, answers=answers, votes=votes)

                started = time.perf_counter()
                asyncio.run(build())
                result[name] = {"build_s": round(time.perf_counter() - started, 1)}
                result[name].update(
                    asyncio.run(time_operations(target, answers=answers, registry=registry, repeats=repeats))
                )
            rates = {}
            offset = 0
            for name, processes in (("sqlite", 1), ("postgresql", 1), ("postgresql", 3)):
                runs = []
                for _ in range(2):
                    runs.append(
                        events_per_second(
                            str(targets[name]), processes=processes, events=args.events, answers=answers, offset=offset
                        )
                    )
                    offset += args.events
                rates[f"{name}_{processes}_process"] = round(statistics.median(runs), 1)
            rates["postgresql_3_over_1"] = round(rates["postgresql_3_process"] / rates["postgresql_1_process"], 2)
            result["vote_events_per_s"] = rates
    finally:
        server.stop()
    result["cores"] = multiprocessing.cpu_count()
    emit(result)


if __name__ == "__main__":
    main()
