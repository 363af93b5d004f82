"""`python -m bench.secure_delete [--votes N]`: what `PRAGMA secure_delete` costs on the vote path.

On one real SQLite file (WAL, the bot's migrations and triggers), records N votes through
`Repository.record_vote` and retracts them through `retract_vote`, with secure_delete off
and on, alternately, three rounds each; then times one `forget_person` (with its WAL
checkpoint) of a person with 100 prompts in a database of 5,000. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import emit, median
from storage.database import Database
from storage.repository import NewResponse, Repository


async def _answers(repository: Repository, count: int, *, author: str = "asker") -> list[int]:
    ids: list[int] = []
    for n in range(count):
        stored = await repository.record_answer(
            platform="slack",
            channel="C",
            author=author if n % 50 else "forgettable",
            text=f"question {n} " * 8,
            context=f"User: question {n}\nBot:",
            conversation=f"slack:C:{n // 10}",
            responses=[NewResponse(text=f"answer {n} " * 8, model_version=0, temperature=1, top_p=1, max_new_tokens=8)],
        )
        ids.extend(stored.response_ids)
    return ids


async def _round(repository: Repository, responses: list[int], votes: int, *, secure: bool) -> tuple[float, float]:
    """Seconds per record_vote and per retract_vote, with secure_delete as given."""
    async with repository.database.reading() as db:
        await db.execute(f"PRAGMA secure_delete = {'ON' if secure else 'OFF'}")
    pairs = [(responses[n % len(responses)], f"voter{n // len(responses)}") for n in range(votes)]
    started = time.perf_counter()
    for response_id, voter in pairs:
        await repository.record_vote(response_id=response_id, voter=voter, emoji="👍", reward=1.0)
    recorded = time.perf_counter()
    for response_id, voter in pairs:
        await repository.retract_vote(response_id=response_id, voter=voter, emoji="👍")
    retracted = time.perf_counter()
    return (recorded - started) / votes, (retracted - recorded) / votes


async def measure(folder: Path, votes: int) -> dict[str, float]:
    async with await Database.open(folder / "votes.db") as database:
        repository = Repository(database)
        responses = await _answers(repository, 500)
        timings: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for round_ in range(4):
            for secure in (False, True) if round_ % 2 else (True, False):  # neither always goes first
                timings[secure].append(await _round(repository, responses, votes, secure=secure))
    async with await Database.open(folder / "forget.db") as database:
        repository = Repository(database)
        await _answers(repository, 5000)
        started = time.perf_counter()
        counts = await repository.forget_person("forgettable")
        forget_s = time.perf_counter() - started
    assert counts.prompts == 100 and counts.wiped

    def us(secure: bool, which: int) -> float:
        return round(median([pair[which] for pair in timings[secure]]) * 1e6, 1)

    return {
        "record_vote_us_off": us(False, 0),
        "record_vote_us_on": us(True, 0),
        "retract_vote_us_off": us(False, 1),
        "retract_vote_us_on": us(True, 1),
        "forget_100_of_5000_prompts_ms": round(forget_s * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=2000, help="votes recorded and retracted per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(Path(tmp), args.votes))
    emit({"votes": args.votes, **result})


if __name__ == "__main__":
    main()
