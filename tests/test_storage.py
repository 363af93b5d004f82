"""Storage on a real SQLite file and a real PostgreSQL server (the ``repository`` fixture
runs each test on both): migrations, idempotent votes, retraction, dedup, concurrency."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from storage.database import Database, migration_files
from storage.dialogue import parse_prompt, render_prompt, without_turns
from storage.identity import SECRET_FILE_NAME, PersonKeys
from storage.postgres import PostgresDatabase
from storage.repository import NewResponse, Repository, VoteOutcome
from tests.helpers import stored_response


async def _answer(repository: Repository, *, version: int = 0, candidates: int = 1, conversation=None):
    return await repository.record_answer(
        platform="shell",
        channel="local",
        author="author-key",
        text="what is the weather like",
        context="User: what is the weather like\nBot:",
        conversation=conversation,
        responses=[
            NewResponse(text=f"answer {i}", model_version=version, temperature=0.9, top_p=0.95, max_new_tokens=24)
            for i in range(candidates)
        ],
    )


@pytest.fixture
async def repository(database_target):
    database = await Database.open(database_target)
    yield Repository(database)
    await database.close()


async def test_fresh_database_gets_every_migration_and_the_pragmas(tmp_path: Path):
    async with await Database.open(tmp_path / "new.db") as database:
        assert await database.applied_migrations() == [n for n, _, _ in migration_files()]
        async with database.reading() as db:
            mode = await (await db.execute("PRAGMA journal_mode")).fetchone()
            foreign = await (await db.execute("PRAGMA foreign_keys")).fetchone()
            sync = await (await db.execute("PRAGMA synchronous")).fetchone()
        assert mode[0] == "wal"
        assert foreign[0] == 1
        assert sync[0] == 1  # NORMAL
        async with database.reading() as db:
            secure = await (await db.execute("PRAGMA secure_delete")).fetchone()
        assert secure[0] == 1  # deleted content is zeroed in the file


async def test_reopening_applies_only_new_migrations_and_keeps_data(tmp_path: Path):
    path = tmp_path / "bot.db"
    async with await Database.open(path) as database:
        stored = await _answer(Repository(database))

    shipped = migration_files()
    extra = (len(shipped) + 1, f"{len(shipped) + 1:04d}_note.sql", "CREATE TABLE note (id INTEGER PRIMARY KEY);")
    async with await Database.open(path, migrations=[*shipped, extra]) as database:
        assert await database.applied_migrations() == [*(n for n, _, _ in shipped), extra[0]]
        assert await stored_response(Repository(database), stored.response_ids[0]) is not None
    # A third open applies nothing and does not fail on the already-created table.
    async with await Database.open(path, migrations=[*shipped, extra]) as database:
        assert len(await database.applied_migrations()) == len(shipped) + 1


async def test_migration_0005_merges_one_persons_alias_votes_into_one(tmp_path: Path):
    path = tmp_path / "old.db"
    async with await Database.open(path, migrations=migration_files()[:4]) as database:
        repository = Repository(database)
        async with database.transaction() as db:  # an answer as the bot before 0005 stored it
            cursor = await db.execute(
                "INSERT INTO prompts (platform, channel, author, text, context, created_at, mode)"
                " VALUES ('shell', 'local', 'author-key', 'hi', 'User: hi\nBot:', 1e9, 'single')"
            )
            cursor = await db.execute(
                "INSERT INTO responses (prompt_id, candidate, text, model_version, temperature, top_p,"
                " max_new_tokens, created_at) VALUES (?, 0, 'hello', 0, 0.9, 0.95, 24, 1e9)",
                (cursor.lastrowid,),
            )
            answer = cursor.lastrowid
        for voter, emoji, reward in [
            ("a", "+1", 1),
            ("a", "thumbsup", 1),  # the same 👍 under its other name: a duplicate
            ("a", "-1", -1),  # a thumbs down too: another vote, kept
            ("b", "thumbsdown", -1),
            ("b", "👎", -1),
            ("c", "tada", 0.5),
        ]:
            async with database.transaction() as db:  # as the bot before 0005 wrote them
                await db.execute(
                    "INSERT INTO votes (response_id, voter, emoji, reward, created_at) VALUES (?, ?, ?, ?, 1e9)",
                    (answer, voter, emoji, reward),
                )
        before = (await repository.approval_by_version())[0]
        assert (before.up, before.down) == (3, 3)  # 🎉 rewards 0.5: an up vote
    async with await Database.open(path) as database:
        repository = Repository(database)
        votes = sorted((v.voter, v.emoji, v.reward) for v in await repository.votes_since(0))
        assert votes == [("a", "👍", 1.0), ("a", "👎", -1.0), ("b", "👎", -1.0), ("c", "tada", 0.5)]
        approval = (await repository.approval_by_version())[0]
        assert (approval.up, approval.down, approval.voters) == (2, 2, 3)


async def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path):
    path = tmp_path / "bot.db"
    shipped = migration_files()
    broken = (len(shipped) + 1, "broken.sql", "CREATE TABLE half (id INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(path, migrations=[*shipped, broken])
    with sqlite3.connect(path) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables and "prompts" not in tables


async def test_vote_is_idempotent_per_voter_answer_and_emoji(repository: Repository):
    stored = await _answer(repository)
    response_id = stored.response_ids[0]
    vote = {"response_id": response_id, "voter": "alice", "emoji": "👍", "reward": 1.0}
    assert await repository.record_vote(**vote) is VoteOutcome.RECORDED
    assert await repository.record_vote(**vote) is VoteOutcome.ALREADY_RECORDED
    assert await repository.record_vote(**{**vote, "voter": "bob"}) is VoteOutcome.RECORDED
    assert await repository.record_vote(**{**vote, "emoji": "👎", "reward": -1.0}) is VoteOutcome.RECORDED
    counts = await repository.approval_by_version()
    assert [(c.version, c.answers, c.voters, c.up, c.down) for c in counts] == [(0, 1, 2, 2, 1)]


async def test_retracting_removes_only_that_vote(repository: Repository):
    response_id = (await _answer(repository)).response_ids[0]
    await repository.record_vote(response_id=response_id, voter="alice", emoji="👍", reward=1.0)
    await repository.record_vote(response_id=response_id, voter="bob", emoji="👍", reward=1.0)
    assert await repository.retract_vote(response_id=response_id, voter="alice", emoji="👍") is VoteOutcome.RETRACTED
    assert (
        await repository.retract_vote(response_id=response_id, voter="alice", emoji="👍")
        is VoteOutcome.NOTHING_TO_RETRACT
    )
    assert [(v.voter, v.reward) for v in await repository.votes_since(0)] == [("bob", 1.0)]


async def test_votes_on_unknown_answers_are_refused(repository: Repository):
    outcome = await repository.record_vote(response_id=999, voter="alice", emoji="👍", reward=1.0)
    assert outcome is VoteOutcome.UNKNOWN_RESPONSE
    assert await repository.votes_since(0) == []
    assert await repository.record_correction(response_id=999, author="alice", text="better") is None


async def test_a_retried_event_is_counted_once(repository: Repository):
    response_id = (await _answer(repository)).response_ids[0]
    event = ("slack", "Ev123")
    first = await repository.record_vote(response_id=response_id, voter="a", emoji="👍", reward=1.0, event=event)
    await repository.retract_vote(response_id=response_id, voter="a", emoji="👍")
    # The retried delivery of the original add must not bring the retracted vote back.
    again = await repository.record_vote(response_id=response_id, voter="a", emoji="👍", reward=1.0, event=event)
    assert (first, again) == (VoteOutcome.RECORDED, VoteOutcome.DUPLICATE_EVENT)
    assert await repository.votes_since(0) == []
    assert await repository.claim_event("slack", "Ev999") is True
    assert await repository.claim_event("slack", "Ev999") is False


async def test_processed_events_survive_a_restart(tmp_path: Path):
    path = tmp_path / "bot.db"
    async with await Database.open(path) as database:
        assert await Repository(database).claim_event("discord", "message:1") is True
    async with await Database.open(path) as database:
        assert await Repository(database).claim_event("discord", "message:1") is False


async def test_message_binding_and_lookup(repository: Repository):
    stored = await _answer(repository, candidates=2, version=3)
    await repository.bind_message(stored.response_ids[1], "slack:C1:1.5")
    found = await repository.response_by_message("slack:C1:1.5")
    assert found is not None
    assert (found.response_id, found.candidate, found.model_version) == (stored.response_ids[1], 1, 3)
    assert await repository.response_by_message("slack:C1:2.5") is None


async def test_votes_since_a_version_counts_from_when_it_went_live(repository: Repository):
    old = (await _answer(repository)).response_ids[0]
    await repository.record_model_version(0, source="base", parent=None)
    await repository.record_vote(response_id=old, voter="a", emoji="👍", reward=1.0)
    await asyncio.sleep(0.01)
    await repository.record_model_version(1, source="v1", parent=0)
    await repository.record_vote(response_id=old, voter="b", emoji="👎", reward=-1.0)
    assert [v.voter for v in await repository.votes_since(1)] == ["b"]
    assert await repository.count_votes_since(0) == 2
    assert await repository.count_votes_since(1) == 1


async def test_conversation_history_is_oldest_first_and_bounded(repository: Repository):
    for _ in range(3):
        await _answer(repository, conversation="shell:abc")
    turns = await repository.conversation_history("shell:abc", limit=2)
    assert len(turns) == 2
    assert turns[0].user_text == "what is the weather like" and turns[0].bot_text == "answer 0"
    assert await repository.conversation_history("shell:other") == []


async def test_concurrent_writers_in_one_process_lose_nothing(repository: Repository):
    response_ids = [(await _answer(repository)).response_ids[0] for _ in range(5)]

    async def voter(index: int) -> None:
        for response_id in response_ids:
            await repository.record_vote(response_id=response_id, voter=f"p{index}", emoji="👍", reward=1.0)
            # Retried deliveries racing the first one.
            await repository.record_vote(response_id=response_id, voter=f"p{index}", emoji="👍", reward=1.0)

    await asyncio.gather(*(voter(i) for i in range(40)))
    assert len(await repository.votes_since(0)) == 40 * 5


def _write_votes_in_other_process(target: str, response_id: int, count: int) -> None:
    """Votes written as a script (or an older bot) would: no model_version, filled by a trigger."""

    async def write() -> None:
        async with await Database.open(target) as database:
            for index in range(count):
                async with database.transaction() as db:
                    await db.execute(
                        "INSERT INTO votes (response_id, voter, emoji, reward, created_at) VALUES (?, ?, '👍', 1, 0)",
                        (response_id, f"other-{index}"),
                    )

    asyncio.run(write())


async def test_concurrent_writers_across_processes(repository: Repository):
    import multiprocessing

    response_id = (await _answer(repository)).response_ids[0]
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_write_votes_in_other_process, args=(_target_of(repository), response_id, 50))
    process.start()
    for index in range(50):
        await repository.record_vote(response_id=response_id, voter=f"here-{index}", emoji="👍", reward=1.0)
    await asyncio.to_thread(process.join, 60)
    assert process.exitcode == 0
    assert len(await repository.votes_since(0)) == 100
    assert (await repository.approval_by_version())[0].up == 100  # the counters saw both processes
    assert await repository.database.integrity_check() == "ok"


def _target_of(repository: Repository) -> str:
    """What opens the same database again (in another process)."""
    database = repository.database
    return database.url if isinstance(database, PostgresDatabase) else str(database.path)


def test_person_keys_are_keyed_hashes_with_a_private_secret_file(tmp_path: Path):
    keys = PersonKeys.from_data_dir(tmp_path)
    secret_file = tmp_path / SECRET_FILE_NAME
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    key = keys.key("slack", "U123")
    assert "U123" not in key and len(key) == 32
    assert PersonKeys.from_data_dir(tmp_path).key("slack", "U123") == key  # stable across restarts
    assert keys.key("discord", "U123") != key  # the platform is part of the identity
    assert PersonKeys.from_data_dir(tmp_path, "another secret, long enough").key("slack", "U123") != key
    assert "secret" not in repr(keys).lower().replace("<secret>", "")


async def test_forgetting_a_person_removes_their_rows_and_answers_to_them(repository: Repository):
    mine = await repository.record_answer(
        platform="slack",
        channel="C",
        author="me",
        text="my question",
        context="",
        responses=[NewResponse(text="a", model_version=0, temperature=1, top_p=1, max_new_tokens=4)],
    )
    theirs = await _answer(repository)  # asked by "author-key"
    await repository.record_vote(response_id=theirs.response_ids[0], voter="me", emoji="👍", reward=1)
    await repository.record_vote(response_id=theirs.response_ids[0], voter="other", emoji="👍", reward=1)
    await repository.record_vote(response_id=mine.response_ids[0], voter="other", emoji="👎", reward=-1)
    await repository.record_correction(response_id=theirs.response_ids[0], author="me", text="better")
    counts = await repository.forget_person("me")
    assert (counts.prompts, counts.votes, counts.corrections) == (1, 1, 1)
    assert await stored_response(repository, mine.response_ids[0]) is None
    assert [(v.voter, v.response_id) for v in await repository.votes_since(0)] == [("other", theirs.response_ids[0])]
    assert await repository.database.integrity_check() == "ok"


async def _ask(repository: Repository, author: str, text: str, answer: str, *, conversation: str | None = None):
    """A prompt stored as the service stores it: its dialogue built from the earlier turns."""
    history = []
    if conversation is not None:
        history = [(t.user_text, t.bot_text) for t in await repository.conversation_history(conversation, limit=4)]
    return await repository.record_answer(
        platform="slack",
        channel="C",
        author=author,
        text=text,
        context=render_prompt(text, history),
        conversation=conversation,
        responses=[NewResponse(text=answer, model_version=0, temperature=1, top_p=1, max_new_tokens=8)],
    )


async def test_a_forgotten_persons_votes_on_earlier_answers_never_return(repository: Repository):
    before = await _ask(repository, "other", "a question", "an answer")
    await repository.record_vote(response_id=before.response_ids[0], voter="me", emoji="👍", reward=1)
    counts = await repository.forget_person("me")
    assert (counts.votes, counts.wiped) == (1, True)
    # A catch-up re-read or a replayed event (a new id, or none) brings the old vote back: refused.
    for event in (None, ("slack", "Ev-replayed")):
        outcome = await repository.record_vote(
            response_id=before.response_ids[0], voter="me", emoji="👍", reward=1, event=event
        )
        assert outcome is VoteOutcome.FORGOTTEN
    # Someone else's vote on the same answer is unaffected.
    assert (
        await repository.record_vote(response_id=before.response_ids[0], voter="other", emoji="👍", reward=1)
        is VoteOutcome.RECORDED
    )
    # After the forget they are like a new person: answers posted since take their votes.
    after = await _ask(repository, "other", "a later question", "a later answer")
    assert (
        await repository.record_vote(response_id=after.response_ids[0], voter="me", emoji="👎", reward=-1)
        is VoteOutcome.RECORDED
    )
    # A second forget moves the tombstone: that vote goes and cannot come back either.
    assert (await repository.forget_person("me")).votes == 1
    assert (
        await repository.record_vote(response_id=after.response_ids[0], voter="me", emoji="👎", reward=-1)
        is VoteOutcome.FORGOTTEN
    )
    # The tombstone is the person key and a time, nothing else.
    async with repository.database.reading() as db:
        tombstones = [tuple(row) for row in await (await db.execute("SELECT * FROM forgotten_people")).fetchall()]
    assert [person for person, _ in tombstones] == ["me"] and tombstones[0][1] > 0
    assert [v.voter for v in await repository.votes_since(0)] == ["other"]


async def test_a_comparison_verdict_from_before_a_forget_never_returns(repository: Repository):
    stored = await _answer(repository, candidates=2)
    async with repository.database.transaction() as db:
        await db.execute("UPDATE prompts SET mode = 'compare' WHERE id = ?", (stored.prompt_id,))
    await repository.bind_message(stored.response_ids[0], "slack:C:1.0")
    comparison = await repository.comparison_by_message("slack:C:1.0")
    assert comparison is not None
    assert (
        await repository.record_comparison(comparison=comparison, voter="me", emoji="🤝", rewards=(0.0, 0.0))
        is VoteOutcome.RECORDED
    )
    await repository.forget_person("me")
    assert (
        await repository.record_comparison(comparison=comparison, voter="me", emoji="🤝", rewards=(0.0, 0.0))
        is VoteOutcome.FORGOTTEN
    )
    assert await repository.comparison_votes() == []


async def test_a_forgotten_persons_turns_leave_other_peoples_dialogues(repository: Repository):
    thread = "slack:C:100.0"
    await _ask(repository, "ann", "hello there", "hi ann", conversation=thread)
    await _ask(repository, "me", "my zanzibar plan", "zanzibar is far", conversation=thread)
    follow = await _ask(repository, "ann", "and what now", "now we wait", conversation=thread)
    await _ask(repository, "me", "zanzibar again", "again zanzibar", conversation=thread)
    last = await _ask(repository, "bob", "anything else", "nothing else", conversation=thread)
    elsewhere = await _ask(repository, "bob", "zanzibar plan", "zanzibar is far", conversation="slack:C:200.0")

    counts = await repository.forget_person("me")

    assert (counts.prompts, counts.contexts) == (2, 2)
    async with repository.database.reading() as db:
        cursor = await db.execute("SELECT id, context FROM prompts ORDER BY id")
        contexts = {row[0]: row[1] for row in await cursor.fetchall()}
    assert contexts[follow.prompt_id] == render_prompt("and what now", [("hello there", "hi ann")])
    assert contexts[last.prompt_id] == render_prompt(
        "anything else", [("hello there", "hi ann"), ("and what now", "now we wait")]
    )
    # Another conversation that happens to hold the same words is not theirs: untouched.
    assert contexts[elsewhere.prompt_id] == render_prompt("zanzibar plan")


def test_turns_are_taken_out_of_a_rendered_dialogue():
    context = render_prompt("q3", [("q1", "a1"), ("my  q2\n", "a2")])
    assert parse_prompt(context) == ([("q1", "a1"), ("my q2", "a2")], "q3")
    assert without_turns(context, {("my q2", "a2")}, question="q3") == render_prompt("q3", [("q1", "a1")])
    assert without_turns(context, set(), question="q3") == context
    # Text that is not a rendered dialogue keeps only the question.
    assert parse_prompt("User: q\nnot a turn\nUser: x\nBot:") is None
    assert without_turns("something else", set(), question="q") == render_prompt("q")


async def test_forgetting_someone_whose_texts_retention_blanked_keeps_only_the_others_questions(
    repository: Repository,
):
    import time as clock

    thread = "slack:C:100.0"
    await _ask(repository, "me", "my old words", "old answer", conversation=thread)
    await repository.purge_texts_before(clock.time() + 1)  # their texts are blank now...
    later = await _ask(repository, "ann", "a new question", "a new answer", conversation=thread)
    async with repository.database.transaction() as db:  # ...but a newer dialogue still quoted them
        await db.execute(
            "UPDATE prompts SET context = ? WHERE id = ?",
            (render_prompt("a new question", [("my old words", "old answer")]), later.prompt_id),
        )
    assert (await repository.forget_person("me")).contexts == 1
    async with repository.database.reading() as db:
        row = await (await db.execute("SELECT context FROM prompts WHERE id = ?", (later.prompt_id,))).fetchone()
    assert row[0] == render_prompt("a new question")


async def test_forgetting_leaves_no_bytes_of_their_text_in_the_database_or_its_wal(tmp_path: Path):
    path = tmp_path / "bot.db"
    async with await Database.open(path) as database:
        repository = Repository(database)
        thread = "slack:C:100.0"
        await _ask(repository, "ann", "hello there", "hi ann", conversation=thread)
        # Long enough to spill into an overflow page, and short ones that stay in the row.
        mine = await _ask(repository, "me", "QUOKKA-SECRET " * 400, "QUOKKA-ANSWER", conversation=thread)
        await _ask(repository, "ann", "and what now", "now we wait", conversation=thread)
        await repository.record_correction(response_id=mine.response_ids[0], author="me", text="QUOKKA-BETTER")
        await repository.database.checkpoint()  # some of it in the database file, not only the WAL
        await _ask(repository, "me", "one more QUOKKA-LATE", "fine", conversation=thread)

        def raw() -> bytes:
            wal = Path(f"{path}-wal")
            return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

        assert b"QUOKKA" in raw()
        counts = await repository.forget_person("me")
        assert counts.wiped
        assert b"QUOKKA" not in raw()
        assert b"hello there" in raw()  # the others' words stay
        assert await database.integrity_check() == "ok"


async def test_retention_blanks_old_texts_and_keeps_counts(repository: Repository):
    import time as clock

    stored = await _answer(repository)
    await repository.record_vote(response_id=stored.response_ids[0], voter="a", emoji="👍", reward=1)
    await repository.record_correction(response_id=stored.response_ids[0], author="a", text="better")
    assert await repository.purge_texts_before(clock.time() - 3600) == 0  # nothing that old
    assert await repository.purge_texts_before(clock.time() + 1) == 1
    async with repository.database.reading() as db:
        texts = await (
            await db.execute(
                "SELECT p.text, p.context, r.text, c.text FROM prompts p JOIN responses r ON r.prompt_id = p.id"
                " JOIN corrections c ON c.response_id = r.id"
            )
        ).fetchone()
    assert tuple(texts) == ("", "", "", "")
    assert (await repository.approval_by_version())[0].up == 1


async def test_posted_answers_since_can_give_the_newest_first_and_at_most_a_limit(repository: Repository):
    keys = []
    for index in range(4):
        stored = await _answer(repository)
        keys.append(f"shell:local:{index}")
        await repository.bind_message(stored.response_ids[0], keys[-1])
    await _answer(repository)  # never posted: no message key

    assert [key for _, key in await repository.posted_answers_since("shell", 0)] == keys
    newest = await repository.posted_answers_since("shell", 0, limit=2, newest_first=True)
    assert [key for _, key in newest] == [keys[3], keys[2]]
    assert await repository.posted_answers_since("shell", 0, limit=0) == []
    assert await repository.posted_answers_since("slack", 0, newest_first=True) == []


async def test_forgetting_drops_their_prompts_still_waiting_for_an_answer(repository: Repository):
    common = {"platform": "slack", "channel": "C1", "thread": None, "conversation": None, "event_id": None}
    await repository.take_pending(user="U1", author="me", text="my secret question", **common)
    await repository.take_pending(user="U2", author="other", text="their question", **common)
    await repository.forget_person("me")
    assert [(p.user, p.text) for p in await repository.pending_prompts("slack")] == [("U2", "their question")]


async def test_recounting_gives_the_counters_the_triggers_kept(repository: Repository):
    """What a bulk load (`thumbtune db copy`) relies on: counters recomputed from the rows
    equal those the triggers kept through votes, retractions, verdicts and a forget."""
    for version in (0, 1):
        for index in range(3):
            stored = await _answer(repository, version=version, candidates=2)
            for voter in range(index + 2):
                await repository.record_vote(
                    response_id=stored.response_ids[0], voter=f"v{voter}", emoji="👍" if voter % 2 else "👎",
                    reward=1.0 if voter % 2 else -1.0,
                )  # fmt: skip
    await repository.retract_vote(response_id=stored.response_ids[0], voter="v1", emoji="👍")
    await repository.forget_person("v0")
    queries = [
        "SELECT version, answers, up, down FROM version_counts WHERE answers + up + down > 0 ORDER BY version",
        "SELECT version, voter, votes FROM version_voters ORDER BY version, voter",
        "SELECT day, votes, up, down FROM day_counts WHERE votes > 0 ORDER BY day",
    ]

    async def counters() -> list[list[tuple]]:
        async with repository.database.reading() as db:
            return [[tuple(row) for row in await (await db.execute(sql)).fetchall()] for sql in queries]

    kept = await counters()
    async with repository.database.transaction() as db:
        await repository.database.recount(db)
    assert await counters() == kept
    assert kept[0] == [(0, 6, 4, 2), (1, 6, 3, 2)]  # v0's three 👎 forgotten, one 👍 retracted


async def test_a_pending_prompt_whose_answer_was_posted_is_not_answered_again(repository: Repository):
    """Killed after posting the answer (its message bound) but before marking the prompt
    answered: the restart does not post it a second time."""
    common = {"platform": "slack", "channel": "C1", "thread": "1.0", "conversation": None}
    posted = await repository.take_pending(user="U1", author="a", text="posted", event_id="Ev1", **common)
    stored_only = await repository.take_pending(user="U2", author="b", text="stored", event_id="Ev2", **common)
    assert posted is not None and stored_only is not None
    for pending in (posted, stored_only):
        stored = await repository.record_answer(
            platform="slack", channel="C1", author="a", text=pending.text, context="", pending_id=pending.pending_id,
            responses=[NewResponse(text="answer", model_version=0, temperature=1, top_p=1, max_new_tokens=4)],
        )  # fmt: skip
        if pending is posted:
            await repository.bind_message(stored.response_ids[0], "slack:C1:2.0")
    assert [p.text for p in await repository.pending_prompts("slack")] == ["stored"]
