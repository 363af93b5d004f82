"""PostgreSQL as the database of several bot processes, on a real server started by the
tests: one migration history in two dialects, and what must hold across processes (an
event claimed once, a person's vote cap, one training leader, pending prompts answered by
one process). The repository's behaviour on both backends is in test_storage.py."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing

import psycopg
import pytest

from storage.database import Database, DatabaseUnavailable, migration_files, safe_url
from storage.postgres import PostgresDatabase, pyformat
from storage.repository import NewResponse, Repository, VoteOutcome
from tests.helpers import wait_for


async def _answer(repository: Repository) -> int:
    stored = await repository.record_answer(
        platform="slack",
        channel="C1",
        author="asker",
        text="hello",
        context="User: hello\nBot:",
        responses=[NewResponse(text="hi", model_version=0, temperature=1, top_p=1, max_new_tokens=4)],
    )
    return stored.response_ids[0]


def test_both_dialects_have_one_migration_history():
    sqlite = [(number, name) for number, name, _ in migration_files("sqlite")]
    postgres = [(number, name) for number, name, _ in migration_files("postgresql")]
    assert sqlite == postgres


def test_placeholders_become_psycopgs_and_quoted_text_is_left_alone():
    assert pyformat("SELECT ? WHERE a LIKE '50%?' AND b = ?") == "SELECT %s WHERE a LIKE '50%%?' AND b = %s"
    assert safe_url("postgresql://bot:hunter2@db:5432/x") == "postgresql://bot:***@db:5432/x"
    assert safe_url("postgresql://bot@db/x") == "postgresql://bot@db/x"


async def test_a_fresh_database_gets_every_migration_and_a_second_process_none(postgres_url: str):
    first, second = await asyncio.gather(Database.open(postgres_url), Database.open(postgres_url))
    try:
        assert await first.applied_migrations() == [n for n, _, _ in migration_files("postgresql")]
        assert await second.applied_migrations() == await first.applied_migrations()
    finally:
        await first.close()
        await second.close()


async def test_a_failing_migration_leaves_the_database_as_it_was(postgres_url: str):
    shipped = migration_files("postgresql")
    broken = (len(shipped) + 1, "broken.sql", "CREATE TABLE half (id INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(psycopg.errors.SyntaxError):
        await Database.open(postgres_url, migrations=[*shipped, broken])
    with psycopg.connect(postgres_url) as raw:
        tables = {row[0] for row in raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "half" not in tables and "prompts" not in tables


async def test_migration_0005_merges_alias_votes_on_postgresql_too(postgres_url: str):
    before_0005 = migration_files("postgresql")[:4]
    async with await Database.open(postgres_url, migrations=before_0005) as database, database.transaction() as db:
        cursor = await db.execute(
            "INSERT INTO prompts (platform, channel, author, text, context, created_at, mode)"
            " VALUES ('shell', 'local', 'k', 'hi', '', 1e9, 'single') RETURNING id"
        )
        prompt = (await cursor.fetchone())[0]
        cursor = await db.execute(
            "INSERT INTO responses (prompt_id, candidate, text, model_version, temperature, top_p,"
            " max_new_tokens, created_at) VALUES (?, 0, 'hello', 0, 0.9, 0.95, 24, 1e9) RETURNING id",
            (prompt,),
        )
        answer = (await cursor.fetchone())[0]
        for voter, emoji, reward in [("a", "+1", 1), ("a", "thumbsup", 1), ("a", "-1", -1), ("b", "👎", -1)]:
            await db.execute(
                "INSERT INTO votes (response_id, voter, emoji, reward, created_at) VALUES (?, ?, ?, ?, 1e9)",
                (answer, voter, emoji, reward),
            )
    async with await Database.open(postgres_url) as database:
        repository = Repository(database)
        votes = sorted((v.voter, v.emoji) for v in await repository.votes_since(0))
        assert votes == [("a", "👍"), ("a", "👎"), ("b", "👎")]
        approval = (await repository.approval_by_version())[0]
        assert (approval.up, approval.down, approval.voters) == (1, 2, 2)
        assert await database.integrity_check() == "ok"


def _claim_in_other_process(url: str, events: list[str], results: multiprocessing.Queue) -> None:
    async def claim() -> list[str]:
        async with await Database.open(url) as database:
            repository = Repository(database)
            return [event for event in events if await repository.claim_event("slack", event)]

    results.put(asyncio.run(claim()))


async def test_an_event_is_claimed_by_one_process_only(postgres_url: str):
    """A retried Slack event reaching another replica: three processes claim the same
    ids at once; each id is claimed exactly once."""
    async with await Database.open(postgres_url):
        pass  # migrated once, so the three start on the same schema
    events = [f"Ev{index}" for index in range(150)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_claim_in_other_process, args=(postgres_url, events, results)) for _ in range(3)
    ]
    for process in processes:
        process.start()
    claimed = [await asyncio.to_thread(results.get, True, 120) for _ in processes]
    for process in processes:
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0
    assert sorted(event for batch in claimed for event in batch) == sorted(events)


async def test_a_persons_daily_vote_cap_holds_across_processes(postgres_url: str):
    """Two connections (as two replicas) record one person's votes at the same time: the
    cap, counted in the database under the person's lock, is never passed."""
    one, two = await Database.open(postgres_url), await Database.open(postgres_url)
    try:
        first, second = Repository(one), Repository(two)
        answers = [await _answer(first) for _ in range(12)]

        async def vote(repository: Repository, response_id: int) -> VoteOutcome:
            return await repository.record_vote(
                response_id=response_id, voter="eager", emoji="👍", reward=1.0, daily_cap=5
            )

        outcomes = await asyncio.gather(
            *(vote(first if index % 2 else second, answer) for index, answer in enumerate(answers))
        )
        assert outcomes.count(VoteOutcome.RECORDED) == 5
        assert outcomes.count(VoteOutcome.CAPPED) == 7
        assert await first.count_votes_by("eager", since=0) == 5
    finally:
        await one.close()
        await two.close()


async def test_one_process_leads_training_until_its_connection_goes(postgres_url: str):
    one, two = await Database.open(postgres_url), await Database.open(postgres_url)
    try:
        assert await one.try_lead("training") is True
        assert await two.try_lead("training") is False
        assert await one.try_lead("training") is True  # still, and held once
        await one.close()  # as a process that dies: its connection closes, the lock goes...
        await wait_for(lambda: two.try_lead("training"), timeout=10)  # ...once the server sees it
    finally:
        await two.close()


async def test_pending_prompts_are_answered_by_their_process_or_taken_over_once_it_is_gone(postgres_url: str):
    common = {"platform": "slack", "channel": "C1", "thread": None, "conversation": None}
    crashed = await Database.open(postgres_url)
    running = await Database.open(postgres_url)
    try:
        await Repository(crashed).take_pending(user="U1", author="a", text="first", event_id="Ev1", **common)
        await Repository(running).take_pending(user="U2", author="b", text="second", event_id="Ev2", **common)
        # While both run, each has only its own.
        assert [p.text for p in await Repository(running).pending_prompts("slack")] == ["second"]
        await crashed.close()
        await wait_for(lambda: _gone(running, crashed), timeout=10)
        # Two processes starting after the crash: exactly one takes the crashed one's prompt.
        started = [await Database.open(postgres_url) for _ in range(2)]
        try:
            found = await asyncio.gather(*(Repository(database).pending_prompts("slack") for database in started))
            assert sorted(p.text for batch in found for p in batch) == ["first"]
            assert [p.text for p in await Repository(running).pending_prompts("slack")] == ["second"]
        finally:
            for database in started:
                await database.close()
    finally:
        await running.close()


async def test_forgetting_vacuums_and_leaves_their_words_in_no_row(postgres_url: str):
    async with await Database.open(postgres_url) as database:
        repository = Repository(database)
        mine = await repository.record_answer(
            platform="slack",
            channel="C",
            author="me",
            text="QUOKKA-SECRET plan",
            context="User: QUOKKA-SECRET plan\nBot:",
            responses=[NewResponse(text="QUOKKA-ANSWER", model_version=0, temperature=1, top_p=1, max_new_tokens=4)],
        )
        await repository.record_correction(response_id=mine.response_ids[0], author="me", text="QUOKKA-BETTER")
        counts = await repository.forget_person("me")
        assert counts.wiped  # VACUUM ran (what it does and does not promise: docs/several-processes.md)
        async with database.reading() as db:
            for table, column in [("prompts", "text"), ("prompts", "context"), ("responses", "text")]:
                cursor = await db.execute(f"SELECT count(*) FROM {table} WHERE {column} LIKE ?", ("%QUOKKA%",))
                assert (await cursor.fetchone())[0] == 0
            cursor = await db.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'prompts'")
            assert (await cursor.fetchone())[0] == 0


async def test_a_server_that_refuses_is_one_line_without_the_password(postgres_server, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://thumbtune:hunter2-secret@127.0.0.1:{postgres_server.port}/no_such_database"
    with pytest.raises(DatabaseUnavailable) as caught:
        await Database.open(url)
    message = str(caught.value)
    assert "no_such_database" in message and "\n" not in message
    assert "hunter2-secret" not in message and "hunter2-secret" not in caplog.text
    assert isinstance(await _open_ok(postgres_server.new_database()), PostgresDatabase)


async def _gone(observer: Database, process: Database) -> bool:
    return not await observer.alive(process.replica)


async def _open_ok(url: str) -> Database:
    database = await Database.open(url)
    await database.close()
    return database


def test_the_database_url_setting_is_checked_and_its_password_masked(monkeypatch, tmp_path):
    from bot.settings import SettingsError, load_settings

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    with pytest.raises(SettingsError) as caught:
        load_settings(database_url="mysql://bot:hunter2@db/x")
    assert str(caught.value).startswith("THUMBTUNE_DATABASE_URL: expected postgresql://")
    assert "hunter2" not in str(caught.value)
    settings = load_settings(database_url="postgresql://bot:hunter2@db:5432/x")
    assert settings.database == "postgresql://bot:hunter2@db:5432/x"
    assert settings.db_setting == "THUMBTUNE_DATABASE_URL"
    assert "hunter2" in settings.secret_values()  # the log masks the password wherever it appears
    assert "hunter2" not in repr(settings)
    assert load_settings().database == load_settings().db_path  # unset: the SQLite file
