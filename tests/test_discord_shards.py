"""Discord sharding (``THUMBTUNE_DISCORD_SHARDS``): several bot processes on one database, each on some shards.

The unmodified discord.py ``AutoShardedClient`` against the fake Discord, which routes
like Discord: a shard's session gets the servers of that shard and their events, DMs
come on shard 0. Two bots on shards 0 and 1 of 2 share one database: SQLite (two
adapters of one process) or PostgreSQL (two runtimes, as two processes would be). Each
answers only its servers (shard 0 the DMs too), and after downtime each catches up on
the prompts and reactions of its own shards only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.adapters.discord import DiscordBot
from bot.adapters.discord.client import ShardedDiscordBot
from bot.catchup import CaughtUp
from bot.service import BotService
from bot.settings import SettingsError, load_settings
from bot.shards import Shards
from tests.fakes.discord import TOKEN, FakeDiscord, Person
from tests.helpers import wait_for
from tests.test_discord import after_downtime, answers_to, asked, handlers_done

ALICE = Person(1001, "alice")
BOB = Person(1002, "bob")
CAROL = Person(1003, "carol")

# A second server, on shard 1 of 2 (Discord: (guild_id >> 22) % count); the fake's first one
# (id 100) is on shard 0.
OTHER_GUILD = (1 << 22) | 7
OTHER_CHANNEL = 210
FIRST, SECOND = Shards(ids=(0,), count=2), Shards(ids=(1,), count=2)
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # the fixtures' loop: the bots must share it


# --- the setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shards"),
    [
        ("", None),
        ("  ", None),
        ("0/1", Shards((0,), 1)),
        ("0,1/4", Shards((0, 1), 4)),
        ("3, 1 / 4", Shards((1, 3), 4)),
        ("0-3,6/8", Shards((0, 1, 2, 3, 6), 8)),
    ],
)
def test_shards_are_read_as_ids_of_a_count(text: str, shards: Shards | None) -> None:
    assert Shards.parse(text) == shards


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,1", "expected shard ids / shard count, e.g. 0,1/4"),
        ("/4", "expected shard ids / shard count"),
        ("a/4", "expected shard ids / shard count"),
        ("0;1/4", "expected shard ids / shard count"),
        ("4/4", "shard 4 is out of range: with 4 shards the ids run from 0 to 3"),
        ("0/0", "the shard count must be from 1 to 65536, got 0"),
        ("1,1/4", "names shard 1 twice"),
        ("3-1/4", "the shard range 3-1 runs backwards"),
    ],
)
def test_a_malformed_value_stops_start_up_with_one_line_naming_the_variable(
    text: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("THUMBTUNE_DISCORD_SHARDS", text)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(f"THUMBTUNE_DISCORD_SHARDS: {message}")
    monkeypatch.setenv("DISCORD_TOKEN", "never-shown-token")
    assert main(["run", "--adapter", "discord"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "THUMBTUNE_DISCORD_SHARDS" in err and "never-shown-token" not in err


def test_a_client_on_shards_is_the_sharded_one() -> None:
    with pytest.raises(TypeError, match="ShardedDiscordBot"):
        DiscordBot(service=None, token=TOKEN, shards=SECOND)  # type: ignore[arg-type]


# --- two bots on two shards of one database -------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_runtimes(request: pytest.FixtureRequest, settings_env: dict[str, str], tmp_path: Path) -> AsyncIterator:
    """The runtimes of two bot processes on one database: one runtime twice (SQLite: two
    adapters of one process), or two runtimes on one PostgreSQL database (each with its own
    connection, as two processes; the same person secret)."""
    from bot.app import open_runtime

    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            runtime = await stack.enter_async_context(open_runtime(load_settings(), loop=False))
            yield runtime, runtime
            return
        url = request.getfixturevalue("postgres_url")
        runtimes = []
        for name in ("first", "second"):
            settings = load_settings(
                data_dir=tmp_path / name,
                database_url=SecretStr(url),
                person_secret=SecretStr("one secret for every process"),
            )
            runtimes.append(await stack.enter_async_context(open_runtime(settings, loop=False)))
        yield runtimes[0], runtimes[1]


@pytest.fixture
async def two_servers(fake_discord: FakeDiscord) -> FakeDiscord:
    fake_discord.add_guild(OTHER_GUILD, OTHER_CHANNEL)
    assert (fake_discord.guild_id >> 22) % 2 == 0 and (OTHER_GUILD >> 22) % 2 == 1
    return fake_discord


@SESSION_LOOP
async def test_thumbtune_run_on_a_shard_identifies_with_it_and_serves_its_servers(
    settings_env: dict[str, str],
    two_servers: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.cli import _run

    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    fake = two_servers
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("THUMBTUNE_DISCORD_SHARDS", "1/2")
    settings = load_settings()
    running = asyncio.create_task(_run(settings))
    try:
        await wait_for(lambda: fake.identifies or running.done(), timeout=60)
        assert not running.done()
        assert [identify["shard"] for identify in fake.identifies] == [[1, 2]]
        await wait_for(lambda: "in 1 servers on shards 1/2" in caplog.text, timeout=30)
        await asked(fake, ALICE, "hello on shard 1", mention_bot=True, channel_id=OTHER_CHANNEL)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert "THUMBTUNE_DISCORD_SHARDS=1/2 runs some of the shards, but a SQLite file serves one process" in caplog.text
    assert not fake.calls_to("PUT", f"/applications/{fake.bot.id}/commands")  # /ask is shard 0's to register


@SESSION_LOOP
async def test_one_process_on_two_shards_catches_up_again_when_one_of_them_cannot_resume(
    runtime: Any, two_servers: FakeDiscord
) -> None:
    fake = two_servers
    both = Shards(ids=(0, 1), count=4)  # shards 2 and 3 hold no server of the fake's
    async with sharded_bot(runtime.service, fake, both, reconcile_hours=24) as client:
        assert sorted(guild.id for guild in client.guilds) == sorted([fake.guild_id, OTHER_GUILD])
        assert sorted(tuple(identify["shard"]) for identify in fake.identifies) == [(0, 4), (1, 4)]
        first = await after_downtime(client)
        assert first.votes.elsewhere == 0

        # Shard 1's session is lost: a question asked meanwhile never arrives as an event.
        await fake.drop_connection(shard=1, resumable=False)
        missed = await fake.say(CAROL, "anyone there?", mention_bot=True, channel_id=OTHER_CHANNEL)
        await wait_for(lambda: len(fake.identifies) == 3, timeout=30)
        assert fake.identifies[-1]["shard"] == [1, 4]
        await wait_for(lambda: answers_to(fake, missed), timeout=30)  # found by the catch-up after it
        await wait_for(lambda: no_pending(runtime), timeout=30)
        assert client._catching_up is not None and (await client._catching_up).prompts == 1
    assert len(answers_to(fake, missed)) == 1


@asynccontextmanager
async def sharded_bot(service: BotService, fake: FakeDiscord, shards: Shards, **options: Any) -> AsyncIterator[Any]:
    """A connected bot on ``shards``, closed on exit."""
    client = ShardedDiscordBot(
        service=service, token=TOKEN, guild_id=fake.guild_id, guild_ready_timeout=0.2, shards=shards, **options
    )
    serving = asyncio.create_task(client.serve())
    await wait_for(lambda: client.is_ready() or serving.done(), timeout=20)
    if serving.done():
        serving.result()
    try:
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(serving, timeout=10)


@asynccontextmanager
async def both_shards(runtimes: tuple[Any, Any], fake: FakeDiscord, **options: Any) -> AsyncIterator[tuple[Any, Any]]:
    """The two processes, each connected on its shard (FIRST, SECOND), closed on exit."""
    async with (
        sharded_bot(runtimes[0].service, fake, FIRST, **options) as first,
        sharded_bot(runtimes[1].service, fake, SECOND, **options) as second,
    ):
        yield first, second


def spy_on_messages(client: Any) -> list[int]:
    """The ids of the messages the gateway handed this client."""
    seen: list[int] = []
    handle: Callable[[Any], Any] = client.listeners.on_message

    async def on_message(message: Any) -> None:
        seen.append(message.id)
        await handle(message)

    client.listeners.on_message = on_message
    return seen


def rest_reads(fake: FakeDiscord, channel_id: int, *, since: int = 0) -> list[str]:
    """Paths of the REST reads of one channel (itself, its history, its messages) after call ``since``."""
    return [
        call.path
        for call in fake.calls[since:]
        if call.method == "GET"
        and (call.path == f"/channels/{channel_id}" or call.path.startswith(f"/channels/{channel_id}/"))
    ]


@SESSION_LOOP
async def test_each_process_serves_the_servers_of_its_shards_and_shard_0_the_dms(
    two_runtimes: tuple[Any, Any], two_servers: FakeDiscord
) -> None:
    fake = two_servers
    async with both_shards(two_runtimes, fake) as (first, second):
        # IDENTIFY names each process's shard; Discord sends each only the servers of its shard.
        assert sorted(tuple(identify["shard"]) for identify in fake.identifies) == [(0, 2), (1, 2)]
        assert [guild.id for guild in first.guilds] == [fake.guild_id]
        assert [guild.id for guild in second.guilds] == [OTHER_GUILD]
        seen_first, seen_second = spy_on_messages(first), spy_on_messages(second)

        in_first = await asked(fake, ALICE, "what is a tree?", mention_bot=True)
        in_second = await asked(fake, BOB, "what is a river?", mention_bot=True, channel_id=OTHER_CHANNEL)
        in_dm = await asked(fake, ALICE, "hello in a DM", channel_id=fake.dm_channel_id)
        await fake.react(CAROL, int(in_second["id"]), "👍")  # a vote in the second server
        await wait_for(lambda: stored_votes(two_runtimes[1]), timeout=10)
        await handlers_done()

    first_prompt, second_prompt, dm_prompt = (
        int(answer["message_reference"]["message_id"]) for answer in (in_first, in_second, in_dm)
    )
    assert [len(answers_to(fake, prompt)) for prompt in (first_prompt, second_prompt, dm_prompt)] == [1, 1, 1]
    # Each process got (and answered) the messages of its shards only.
    assert {first_prompt, dm_prompt} <= set(seen_first) and second_prompt not in seen_first
    assert second_prompt in seen_second and not {first_prompt, dm_prompt} & set(seen_second)
    # /ask is registered once, by the process on shard 0.
    assert len(fake.calls_to("PUT", f"/applications/{fake.bot.id}/guilds/{fake.guild_id}/commands")) == 1


@SESSION_LOOP
async def test_after_downtime_each_process_catches_up_on_its_own_shards_only(
    two_runtimes: tuple[Any, Any], two_servers: FakeDiscord
) -> None:
    fake = two_servers
    async with both_shards(two_runtimes, fake) as (first, second):
        assert (await after_downtime(first)).prompts == (await after_downtime(second)).prompts == 0
        answers = [
            await asked(fake, ALICE, "what is a tree?", mention_bot=True),
            await asked(fake, BOB, "what is a river?", mention_bot=True, channel_id=OTHER_CHANNEL),
            await asked(fake, ALICE, "hello in a DM", channel_id=fake.dm_channel_id),
        ]
        await handlers_done()

    # While both are away: a question in each server and a DM, a 👍 on each answer.
    missed_first = await fake.say(BOB, "and a lake?", mention_bot=True)
    missed_second = await fake.say(CAROL, "and the sea?", mention_bot=True, channel_id=OTHER_CHANNEL)
    missed_dm = await fake.say(ALICE, "are you back?", channel_id=fake.dm_channel_id)
    for answer in answers:
        await fake.react(CAROL, int(answer["id"]), "👍")

    # The process on shard 1 comes back first: its server only; no DM, no read of shard 0's channels.
    before = len(fake.calls)
    async with sharded_bot(two_runtimes[1].service, fake, SECOND, reconcile_hours=24) as second:
        downtime = await after_downtime(second)
        await wait_for(lambda: answers_to(fake, missed_second), timeout=30)
        await wait_for(lambda: no_pending(two_runtimes[1]), timeout=30)  # bound and marked answered
    assert downtime.prompts == 1
    assert downtime.votes == CaughtUp(checked=1, added=1, elsewhere=2)
    assert not answers_to(fake, missed_first) and not answers_to(fake, missed_dm)
    assert rest_reads(fake, fake.channel_id, since=before) == []
    assert rest_reads(fake, fake.dm_channel_id, since=before) == []
    assert await stored_votes(two_runtimes[1]) == 1

    # Then the one on shard 0: its server and the DMs; the other server's channel is looked up
    # once (is it a DM?) and never read.
    before = len(fake.calls)
    async with sharded_bot(two_runtimes[0].service, fake, FIRST, reconcile_hours=24) as first:
        downtime = await after_downtime(first)
        for prompt in (missed_first, missed_dm):
            await wait_for(lambda prompt=prompt: answers_to(fake, prompt), timeout=30)
        await wait_for(lambda: no_pending(two_runtimes[0]), timeout=30)
    assert downtime.prompts == 2
    # Four recent answers: its two, and the other server's two (one of them answered just now).
    assert downtime.votes == CaughtUp(checked=2, added=2, elsewhere=2)
    assert rest_reads(fake, OTHER_CHANNEL, since=before) == [f"/channels/{OTHER_CHANNEL}"]
    assert await stored_votes(two_runtimes[0]) == 3
    missed = (missed_first, missed_second, missed_dm)
    assert [len(answers_to(fake, prompt)) for prompt in missed] == [1, 1, 1]


async def no_pending(runtime: Any) -> bool:
    async with runtime.database.reading() as db:
        cursor = await db.execute("SELECT count(*) FROM pending_prompts")
        row = await cursor.fetchone()
    return int(row[0]) == 0


async def stored_votes(runtime: Any) -> int:
    async with runtime.database.reading() as db:
        cursor = await db.execute("SELECT count(*) FROM votes")
        row = await cursor.fetchone()
    return int(row[0])


@SESSION_LOOP
async def test_only_the_process_whose_shards_hold_the_announce_channel_announces(
    two_runtimes: tuple[Any, Any], two_servers: FakeDiscord
) -> None:
    fake = two_servers
    options = {"announce_channel": str(OTHER_CHANNEL)}
    async with both_shards(two_runtimes, fake, **options) as (first, second):
        await first.announce("Now serving model version 1.")
        await second.announce("Now serving model version 1.")
    # Both returned: the process on shard 0 without posting (not its server), the other once.
    assert [message["content"] for message in fake.bot_messages(OTHER_CHANNEL)] == ["Now serving model version 1."]
