"""`thumbtune db copy`: a SQLite bot moved to PostgreSQL and back, by the real command, on
a real server: every table with its counters, the counts checked, a non-empty target refused."""

from __future__ import annotations

from pathlib import Path

from storage.database import Database
from storage.repository import ComparisonRef, NewResponse, Repository
from tests.helpers import thumbtune

_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8}


async def _fill(repository: Repository) -> None:
    """A little of everything a bot stores."""
    await repository.record_model_version(0, source="base", parent=None)
    for index in range(5):
        stored = await repository.record_answer(
            platform="slack",
            channel="C1",
            author=f"asker-{index % 2}",
            text=f"question {index}",
            context=f"User: question {index}\nBot:",
            conversation="slack:C1:1.0" if index < 3 else None,
            responses=[
                NewResponse(
                    text=f"answer {index}/{c}", model_version=index % 2, temperature=1, top_p=1, max_new_tokens=8
                )
                for c in range(2)
            ],
            mode="compare" if index == 4 else "single",
        )
        await repository.bind_message(stored.response_ids[0], f"slack:C1:{index}.5")
        for voter in range(index + 1):
            await repository.record_vote(
                response_id=stored.response_ids[0],
                voter=f"v{voter}",
                emoji="👍" if voter % 3 else "👎",
                reward=1.0 if voter % 3 else -1.0,
                event=("slack", f"Ev{index}-{voter}"),
            )
        await repository.record_correction(response_id=stored.response_ids[0], author="fixer", text=f"better {index}")
    comparison = await repository.comparison_by_message("slack:C1:4.5")
    assert isinstance(comparison, ComparisonRef)
    await repository.record_comparison(comparison=comparison, voter="judge", emoji="1️⃣", rewards=(1.0, -1.0))
    await repository.forget_person("asker-1")
    run = await repository.start_training_run(parent_version=0)
    await repository.finish_training_run(run, status="published", new_version=1, examples=7)
    await repository.take_pending(
        platform="slack", channel="C1", thread=None, user="U9", author="late", text="still waiting",
        conversation=None, event_id="Ev-pending",
    )  # fmt: skip


async def _picture(target: Path | str) -> dict[str, object]:
    """What the bot reads back, the same on both backends."""
    async with await Database.open(target) as database:
        repository = Repository(database)
        return {
            "approval": await repository.approval_by_version(),
            "days": await repository.votes_per_day(days=100_000),
            "votes": [(v.response_id, v.voter, v.emoji, v.reward) for v in await repository.all_votes()],
            "verdicts": await repository.comparison_votes(),
            "answers": await repository.feedback_answers(),
            "corrections": await repository.corrections(),
            "runs": await repository.training_runs(),
            "pending": [(p.text, p.event_id) for p in await repository.pending_prompts("slack")],
            "claimed again": await repository.claim_event("slack", "Ev0-0"),
        }


async def test_a_sqlite_bot_moves_to_postgresql_and_back(tmp_path: Path, postgres_server):
    source = tmp_path / "bot.db"
    async with await Database.open(source) as database:
        await _fill(Repository(database))
    before = await _picture(source)
    target = postgres_server.new_database()
    env = {"THUMBTUNE_DB": str(source), "THUMBTUNE_DATA_DIR": str(tmp_path / "data")}

    moved = thumbtune(["db", "copy", "--to", target], env)
    assert moved.returncode == 0, moved.stderr
    assert "prompts 3, responses 6, votes 11," in moved.stdout and "counters checked" in moved.stdout
    assert await _picture(target) == before

    again = thumbtune(["db", "copy", "--to", target], env)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "thumbtune: copy refused: the target already holds data (table prompts is not empty): copy into an empty one"
    ]

    # New rows on the copy take ids after the copied ones.
    async with await Database.open(target) as database:
        repository = Repository(database)
        stored = await repository.record_answer(
            platform="slack", channel="C1", author="new", text="after the move", context="",
            responses=[NewResponse(text="fine", model_version=1, temperature=1, top_p=1, max_new_tokens=4)],
        )  # fmt: skip
        assert stored.prompt_id == 6

    back = tmp_path / "back.db"
    returned = thumbtune(["db", "copy", "--from", target, "--to", str(back)], env)
    assert returned.returncode == 0, returned.stderr
    async with await Database.open(back) as database:
        assert len(await Repository(database).feedback_answers()) == len(before["answers"])  # type: ignore[arg-type]
        assert (await Repository(database).approval_by_version())[-1].answers >= 1


def test_copy_names_a_target_it_cannot_reach_in_one_line_without_its_password(tmp_path: Path, postgres_server):
    source = tmp_path / "bot.db"
    env = {"THUMBTUNE_DB": str(source), "THUMBTUNE_DATA_DIR": str(tmp_path / "data")}
    assert thumbtune(["db", "copy", "--to", str(tmp_path / "x.db")], env).returncode == 2  # nothing to copy
    import sqlite3

    sqlite3.connect(source).close()
    url = f"postgresql://thumbtune:hunter2-secret@127.0.0.1:{postgres_server.port}/missing"
    result = thumbtune(["db", "copy", "--to", url], env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "missing" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout
