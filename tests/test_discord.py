"""The Discord adapter: the unmodified discord.py client against a local fake Discord.

Every scenario goes through the real library (REST, gateway, command tree) and checks
the rows stored in the bot's SQLite file, not only the calls made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import pytest
import yarl

from bot.adapters.discord import NEEDS, DiscordBot, DiscordStartupError, Downtime, invite_url, required_intents
from bot.catchup import CaughtUp
from tests.fakes.discord import (
    ATTACH_FILES,
    BAD_TOKEN,
    CLOSE_DISALLOWED_INTENTS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    TOKEN,
    FakeDiscord,
    Person,
)
from tests.helpers import publish_copy, wait_for

# The runtime fixture lives on the session loop; the bot must share it.
pytestmark = pytest.mark.asyncio(loop_scope="session")

ALICE = Person(1001, "alice")
BOB = Person(1002, "bob")
CAROL = Person(1003, "carol")
OTHER_BOT = Person(1004, "otherbot", bot=True)

# How Discord's settings name the permissions whose discord.py names differ.
DISCORD_NAMES = {"view_channel": "View Channels", "send_messages_in_threads": "Send Messages in Threads"}

PRIVILEGED_INTENTS = discord.Intents(members=True, presences=True, message_content=True).value


@asynccontextmanager
async def running_bot(runtime: Any, fake: FakeDiscord, **options: Any) -> AsyncIterator[DiscordBot]:
    """A connected bot, closed on exit; entering it again is a restart on the same database."""
    client = DiscordBot(
        service=runtime.service, token=TOKEN, guild_id=fake.guild_id, guild_ready_timeout=0.2, **options
    )
    serving = asyncio.create_task(client.serve())
    await wait_for(lambda: client.is_ready() or serving.done(), timeout=15)
    if serving.done():
        serving.result()  # raise what stopped it
    try:
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(serving, timeout=10)


@pytest.fixture
async def bot(runtime: Any, fake_discord: FakeDiscord) -> AsyncIterator[DiscordBot]:
    async with running_bot(runtime, fake_discord) as client:
        yield client


def rows(db_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the bot's database file through a connection of its own."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute(sql, params).fetchall()


def votes(settings: Any) -> list[tuple[Any, ...]]:
    return rows(settings.db_path, "SELECT response_id, voter, emoji, reward FROM votes ORDER BY id")


async def asked(fake: FakeDiscord, person: Person, text: str, **where: Any) -> dict[str, Any]:
    """Post a prompt and wait for the bot's rateable answer (replied, bound and thumbed)."""
    prompt_id = await fake.say(person, text, **where)
    answer = await wait_for(lambda: fake.answer_to(prompt_id), timeout=30)
    answer_id = int(answer["id"])
    await wait_for(lambda: {(answer_id, fake.bot.id, "👍"), (answer_id, fake.bot.id, "👎")} <= fake.reactions)
    return answer


async def handlers_done() -> None:
    """Wait until no event handler of the bot is running (discord.py names their tasks)."""

    def idle() -> bool:
        running = asyncio.current_task()
        return not any(
            task.get_name().startswith("discord.py: on_") and task is not running and not task.done()
            for task in asyncio.all_tasks()
        )

    await wait_for(idle)


def key(fake: FakeDiscord, message: dict[str, Any]) -> str:
    return f"discord:{message['channel_id']}:{message['id']}"


def response_id(settings: Any, fake: FakeDiscord, message: dict[str, Any]) -> int:
    found = rows(settings.db_path, "SELECT id FROM responses WHERE message_key = ?", key(fake, message))
    assert found, f"no response bound to {key(fake, message)}"
    return int(found[0][0])


async def test_identify_asks_only_for_the_needed_intents_and_syncs_ask_to_the_test_guild(
    bot: DiscordBot, fake_discord: FakeDiscord
) -> None:
    assert len(fake_discord.identifies) == 1
    intents = fake_discord.identifies[0]["intents"]
    assert intents == required_intents().value
    assert discord.Intents._from_value(intents) == discord.Intents(
        guilds=True, guild_messages=True, dm_messages=True, guild_reactions=True, dm_reactions=True
    )
    assert intents & PRIVILEGED_INTENTS == 0
    guild_commands = f"/applications/{fake_discord.bot.id}/guilds/{fake_discord.guild_id}/commands"
    synced = fake_discord.calls_to("PUT", guild_commands)
    assert [command["name"] for command in synced[0].body] == ["ask"]
    assert not fake_discord.calls_to("PUT", f"/applications/{fake_discord.bot.id}/commands")


async def test_mention_gets_a_reply_with_two_thumbs_and_is_stored(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    answer = await asked(fake_discord, ALICE, "what is a tree?", mention_bot=True)

    assert answer["type"] == 19  # a reply to the prompt
    posted = fake_discord.calls_to("POST", f"/channels/{fake_discord.channel_id}/messages")
    assert posted[0].body["allowed_mentions"]["parse"] == []  # generated text never pings anyone
    assert posted[0].body["message_reference"]["fail_if_not_exists"] is False  # a deleted prompt still gets it
    [(text, channel, author, conversation)] = rows(
        settings.db_path, "SELECT text, channel, author, conversation FROM prompts"
    )
    assert text == "what is a tree?"  # the mention itself is not part of the prompt
    assert channel == str(fake_discord.channel_id)
    assert author != str(ALICE.id)  # people are stored as keyed hashes
    assert conversation.startswith(f"discord:{fake_discord.channel_id}:")
    [(stored_answer, message_key)] = rows(settings.db_path, "SELECT text, message_key FROM responses")
    assert message_key == key(fake_discord, answer)
    assert answer["content"] == (stored_answer or "…")
    # The bot's own 👍/👎 came back as gateway events; only a person's vote (sent after them) counts.
    await fake_discord.react(BOB, int(answer["id"]), "👎")
    await wait_for(lambda: votes(settings))
    await handlers_done()
    assert [row[2:] for row in votes(settings)] == [("👎", -1.0)]


async def test_a_rate_limited_reaction_is_retried_by_discord_py(bot: DiscordBot, fake_discord: FakeDiscord) -> None:
    fake_discord.rate_limit_next_reaction = True
    answer = await asked(fake_discord, ALICE, "rate limits?", mention_bot=True)
    assert len(fake_discord.calls_to("PUT", f"/channels/{answer['channel_id']}/messages/{answer['id']}/reactions")) == 3


async def test_failing_typing_and_reactions_never_stop_an_answer_or_a_vote(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Cosmetic calls are best-effort: Discord answers 404 to the typing indicator (as once
    # seen in the wild) and 403 to every reaction the bot adds (👍/👎, the ✅ on a correction).
    fake = fake_discord
    fake.fail_route("POST", "/channels/*/typing", 404)
    fake.fail_route("PUT", "/channels/*/messages/*/reactions/*", 403)
    prompt_id = await fake.say(ALICE, "answer me anyway", mention_bot=True)
    answer = await wait_for(lambda: fake.answer_to(prompt_id), timeout=30)

    assert fake.calls_to("POST", f"/channels/{fake.channel_id}/typing")  # tried, refused
    # The answer is bound to its message right after it is posted (a moment after the fake sees it).
    bound = await wait_for(
        lambda: rows(settings.db_path, "SELECT message_key, model_version FROM responses WHERE message_key IS NOT NULL")
    )
    assert bound == [(key(fake, answer), 0)]
    offered = f"/channels/{answer['channel_id']}/messages/{answer['id']}/reactions/"
    await wait_for(lambda: len(fake.calls_to("PUT", offered)) == 2)  # 👎 still tried after 👍 failed

    correction = await fake.say(BOB, "better: a fine answer", reply_to=int(answer["id"]))
    await wait_for(lambda: fake.calls_to("PUT", f"/channels/{fake.channel_id}/messages/{correction}/reactions/"))
    assert rows(settings.db_path, "SELECT text FROM corrections") == [("a fine answer",)]
    await fake.react(CAROL, int(answer["id"]), "👍")  # votes come from people: they still count
    await wait_for(lambda: votes(settings))
    await handlers_done()
    assert [row[2:] for row in votes(settings)] == [("👍", 1.0)]
    messages = [record.getMessage() for record in caplog.records]
    assert not [text for text in messages if "handler failed" in text]
    assert len([text for text in messages if "typing" in text and "failed (404" in text]) == 1
    assert len([text for text in messages if "failed (403" in text]) == 3
    assert TOKEN not in caplog.text


async def test_direct_message_is_answered_without_a_mention(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    answer = await asked(fake_discord, ALICE, "hello there", channel_id=fake_discord.dm_channel_id)

    assert answer["channel_id"] == str(fake_discord.dm_channel_id)
    [(platform, channel)] = rows(settings.db_path, "SELECT platform, channel FROM prompts")
    assert (platform, channel) == ("discord", str(fake_discord.dm_channel_id))
    await fake_discord.react(ALICE, int(answer["id"]), "👎")
    await wait_for(lambda: votes(settings))
    await handlers_done()
    assert [row[2:] for row in votes(settings)] == [("👎", -1.0)]  # the bot's own thumbs not counted


async def test_plain_channel_messages_are_not_prompts(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    await fake_discord.say(ALICE, "just chatting with people")
    await fake_discord.say(OTHER_BOT, "a bot mentioning the bot", mention_bot=True)
    await asked(fake_discord, BOB, "sentinel question", mention_bot=True)
    await handlers_done()
    assert [row[0] for row in rows(settings.db_path, "SELECT text FROM prompts")] == ["sentinel question"]


async def test_ask_command_is_deferred_then_answered_with_a_follow_up(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    interaction_id = await fake_discord.ask(ALICE, "tell me a story")

    def follow_up() -> Any:
        return next((call for call in fake_discord.calls if call.path.startswith("/webhooks/")), None)

    call = await wait_for(follow_up, timeout=30)
    callbacks = fake_discord.calls_to("POST", f"/interactions/{interaction_id}/")
    assert [callback.body["type"] for callback in callbacks] == [5]  # deferred, "thinking"
    assert fake_discord.calls.index(callbacks[0]) < fake_discord.calls.index(call)
    assert call.body["content"].startswith("> tell me a story\n")
    answer = fake_discord.bot_messages()[-1]
    answer_id = int(answer["id"])
    thumbs = {(answer_id, fake_discord.bot.id, "👍"), (answer_id, fake_discord.bot.id, "👎")}
    await wait_for(lambda: thumbs <= fake_discord.reactions)
    [(text, conversation)] = rows(settings.db_path, "SELECT text, conversation FROM prompts")
    assert text == "tell me a story"
    assert conversation == f"discord:{fake_discord.channel_id}:{interaction_id}"
    assert response_id(settings, fake_discord, answer) > 0

    await fake_discord.react(BOB, answer_id, "👎")
    await wait_for(lambda: votes(settings))
    assert votes(settings)[0][2:] == ("👎", -1.0)


async def test_vote_change_of_vote_and_removal(bot: DiscordBot, fake_discord: FakeDiscord, settings: Any) -> None:
    answer = await asked(fake_discord, ALICE, "rate me", mention_bot=True)
    answer_id, target = int(answer["id"]), response_id(settings, fake_discord, answer)

    await fake_discord.react(ALICE, answer_id, "👍")
    await wait_for(lambda: len(votes(settings)) == 1)
    [(response, alice, emoji, reward)] = votes(settings)
    assert (response, emoji, reward) == (target, "👍", 1.0)

    # Alice changes her mind: takes 👍 back, gives 👎.
    await fake_discord.unreact(ALICE, answer_id, "👍")
    await fake_discord.react(ALICE, answer_id, "👎")
    await wait_for(lambda: [row[2:] for row in votes(settings)] == [("👎", -1.0)])
    assert votes(settings)[0][1] == alice

    # Bob's skin-toned thumbs up counts as 👍.
    await fake_discord.react(BOB, answer_id, "👍🏽")
    await wait_for(lambda: len(votes(settings)) == 2)
    assert votes(settings)[1][2:] == ("👍", 1.0)
    assert votes(settings)[1][1] != alice

    # Removal deletes the vote.
    await fake_discord.unreact(ALICE, answer_id, "👎")
    await wait_for(lambda: len(votes(settings)) == 1)
    assert votes(settings)[0][2:] == ("👍", 1.0)


async def test_reactions_that_are_not_votes_are_ignored(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    answer = await asked(fake_discord, ALICE, "ignore these", mention_bot=True)
    answer_id = int(answer["id"])
    someone_elses = await fake_discord.say(BOB, "a message by a person")
    dm_message = await fake_discord.say(BOB, "a message in a DM", channel_id=fake_discord.dm_channel_id)

    await fake_discord.react(OTHER_BOT, answer_id, "👍")  # another bot
    await fake_discord.react(ALICE, someone_elses, "👍")  # not the bot's message
    await fake_discord.react(ALICE, dm_message, "👍")  # not ours; no author in the event
    await fake_discord.react(ALICE, answer_id, "🎉")  # not in the emoji table
    await fake_discord.react(ALICE, answer_id, "thumbsup", custom_id=555)  # a custom emoji named like one
    await fake_discord.unreact(CAROL, answer_id, "👍")  # removing what was never counted
    await fake_discord.react(CAROL, answer_id, "👎")  # the one real vote, sent last

    await wait_for(lambda: votes(settings))
    await handlers_done()  # every ignored reaction has been handled too
    assert [(row[0], row[2], row[3]) for row in votes(settings)] == [
        (response_id(settings, fake_discord, answer), "👎", -1.0)
    ]


async def test_reply_with_prefix_is_stored_as_a_correction(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    answer = await asked(fake_discord, ALICE, "capital of France?", mention_bot=True)
    correction = await fake_discord.say(BOB, "Better: Paris is the capital.", reply_to=int(answer["id"]))

    await wait_for(lambda: rows(settings.db_path, "SELECT response_id, text FROM corrections"))
    [(target, text)] = rows(settings.db_path, "SELECT response_id, text FROM corrections")
    assert (target, text) == (response_id(settings, fake_discord, answer), "Paris is the capital.")
    await wait_for(lambda: (correction, fake_discord.bot.id, "✅") in fake_discord.reactions)
    assert len(rows(settings.db_path, "SELECT id FROM prompts")) == 1  # not answered as a prompt


async def test_reply_chain_and_thread_carry_the_conversation(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    first = await asked(fake_discord, ALICE, "my name is Alice", mention_bot=True)
    await asked(fake_discord, ALICE, "what is my name?", reply_to=int(first["id"]))
    thread = fake_discord.thread_id
    in_thread = await asked(fake_discord, BOB, "first in thread", mention_bot=True, channel_id=thread)
    await asked(fake_discord, BOB, "second in thread", mention_bot=True, channel_id=thread)

    stored = rows(settings.db_path, "SELECT text, conversation, context FROM prompts ORDER BY id")
    assert stored[1][1] == stored[0][1]
    assert "User: my name is Alice" in stored[1][2] and stored[1][2].endswith("User: what is my name?\nBot:")
    assert stored[2][1] == stored[3][1] == f"discord:{fake_discord.thread_id}"
    assert "User: first in thread" in stored[3][2]
    assert in_thread["channel_id"] == str(fake_discord.thread_id)


async def test_resume_in_the_middle_of_voting_loses_nothing_and_counts_nothing_twice(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    answer = await asked(fake_discord, ALICE, "vote on me", mention_bot=True)
    answer_id = int(answer["id"])
    await fake_discord.react(ALICE, answer_id, "👍")
    await wait_for(lambda: len(votes(settings)) == 1)

    await fake_discord.drop_connection()
    # While the bot is away: new votes, a retraction, a replayed vote and a replayed prompt.
    await fake_discord.react(BOB, answer_id, "👍")
    await fake_discord.react(CAROL, answer_id, "👎")
    await fake_discord.react(ALICE, answer_id, "👍")  # the same vote delivered again
    await fake_discord.unreact(CAROL, answer_id, "👎")
    await fake_discord.react(CAROL, answer_id, "👍")
    prompt_id = await fake_discord.say(BOB, "asked during the outage", mention_bot=True)
    await fake_discord.dispatch("MESSAGE_CREATE", fake_discord.messages[prompt_id])  # delivered twice

    await asyncio.wait_for(fake_discord.resumed.wait(), timeout=15)
    assert len(fake_discord.identifies) == 1 and len(fake_discord.resumes) == 1  # resumed, not a new session
    await wait_for(lambda: fake_discord.answer_to(prompt_id), timeout=30)
    await wait_for(lambda: sorted(row[2] for row in votes(settings)) == ["👍", "👍", "👍"])
    assert len({row[1] for row in votes(settings)}) == 3  # alice, bob, carol once each
    assert len([m for m in fake_discord.bot_messages() if m.get("message_reference")]) == 2  # answered once


async def test_a_failing_handler_is_logged_and_the_bot_goes_on(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake_discord.fail_next_post.add(fake_discord.channel_id)  # Discord answers 400 once
    failed_prompt = await fake_discord.say(ALICE, "this reply will fail", mention_bot=True)

    def logged() -> list[logging.LogRecord]:
        return [record for record in caplog.records if "handler failed" in record.getMessage()]

    await wait_for(logged, timeout=30)
    assert f"message {failed_prompt}" in logged()[0].getMessage()
    assert TOKEN not in caplog.text  # secrets never reach the log
    await asked(fake_discord, ALICE, "and this one works", mention_bot=True)
    assert bot.is_ready() and not bot.is_closed()


async def test_a_failing_ask_is_logged_and_apologised_for(
    bot: DiscordBot, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake_discord.fail_next_follow_up = True  # Discord refuses the answer once
    interaction_id = await fake_discord.ask(ALICE, "this answer will fail")

    await wait_for(lambda: len(fake_discord.calls_to("POST", "/webhooks/")) == 2, timeout=30)
    apology = fake_discord.calls_to("POST", "/webhooks/")[1].body
    assert apology["content"].startswith("Sorry") and apology["flags"] == 64  # ephemeral
    assert any(f"interaction {interaction_id}" in record.getMessage() for record in caplog.records)
    await asked(fake_discord, ALICE, "still answering", mention_bot=True)


async def test_disallowed_intents_stop_start_up_with_a_clear_error(runtime: Any, fake_discord: FakeDiscord) -> None:
    fake_discord.close_on_identify = CLOSE_DISALLOWED_INTENTS
    client = DiscordBot(service=runtime.service, token=TOKEN, guild_ready_timeout=0.2)
    with pytest.raises(DiscordStartupError, match="developer portal") as error:
        await asyncio.wait_for(client.serve(), timeout=15)
    assert "Privileged Gateway Intents" in str(error.value)
    assert client.is_closed()
    assert fake_discord.calls_to("PUT", f"/applications/{fake_discord.bot.id}/commands")  # synced globally


async def test_a_rejected_token_stops_start_up_with_a_clear_error(
    runtime: Any, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    client = DiscordBot(service=runtime.service, token=BAD_TOKEN)
    with pytest.raises(DiscordStartupError, match="DISCORD_TOKEN"):
        await asyncio.wait_for(client.serve(), timeout=15)
    assert BAD_TOKEN not in caplog.text
    assert not fake_discord.identifies


async def test_thumbtune_run_starts_the_discord_bot_from_settings(
    settings_env: dict[str, str], fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import _run
    from bot.settings import load_settings

    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("THUMBTUNE_DISCORD_GUILD_ID", str(fake_discord.guild_id))
    settings = load_settings()
    assert settings.chosen_adapter() == "discord"
    running = asyncio.create_task(_run(settings))
    try:
        await wait_for(lambda: fake_discord.identifies or running.done(), timeout=30)
        assert not running.done()
        guild_sync = f"/applications/{fake_discord.bot.id}/guilds/{fake_discord.guild_id}/commands"
        assert fake_discord.calls_to("PUT", guild_sync)
        answer = await asked(fake_discord, ALICE, "hello from the CLI", mention_bot=True)
        assert rows(settings.db_path, "SELECT message_key FROM responses") == [(key(fake_discord, answer),)]
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_thumbtune_run_explains_a_rejected_or_missing_token(
    settings_env: dict[str, str],
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.cli import _run
    from bot.settings import load_settings

    assert await _run(load_settings(adapter="discord")) == 2
    assert "needs DISCORD_TOKEN" in capsys.readouterr().err

    monkeypatch.setenv("DISCORD_TOKEN", BAD_TOKEN)
    assert await _run(load_settings()) == 1
    err = capsys.readouterr().err
    assert "Discord rejected DISCORD_TOKEN" in err and BAD_TOKEN not in err


async def test_invite_url_asks_for_exactly_the_needed_permissions() -> None:
    url = yarl.URL(invite_url(1234))
    assert url.query["client_id"] == "1234"
    assert url.query["scope"] == "bot applications.commands"
    granted = discord.Permissions(int(url.query["permissions"]))
    assert granted == discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,  # threads do not inherit Send Messages
        attach_files=True,  # the stats chart: without it Discord refuses the whole message
        add_reactions=True,
        read_message_history=True,
        use_application_commands=True,
    )
    # Derived from the features that need each bit, and nothing else.
    assert granted == discord.Permissions(**{grant: True for need in NEEDS for grant in need.grants})
    readme = (Path(__file__).resolve().parents[1] / "docs" / "discord.md").read_text(encoding="utf-8")
    assert f"permissions={granted.value}" in readme  # the link docs/discord.md gives
    for need in NEEDS:  # and its table says which feature needs which permission
        names = [DISCORD_NAMES.get(name, name.replace("_", " ").title()) for name in need.grants]
        assert all(f"**{name}**" in readme for name in names), names


# --- catching up after downtime --------------------------------------------------------


async def after_downtime(client: DiscordBot) -> Downtime:
    """The summary of the catch-up the bot started when it connected."""
    task = await wait_for(lambda: client._catching_up, timeout=15)
    return await asyncio.wait_for(task, timeout=30)


async def caught_up(client: DiscordBot) -> CaughtUp:
    """The votes the bot caught up on when it connected."""
    return (await after_downtime(client)).votes


def voters(settings: Any, fake: FakeDiscord, message: dict[str, Any]) -> list[tuple[str, str]]:
    """(voter hash, emoji) of the votes on one answer."""
    return rows(
        settings.db_path,
        "SELECT voter, emoji FROM votes WHERE response_id = ? ORDER BY voter, emoji",
        response_id(settings, fake, message),
    )


def person_key(runtime: Any, person: Person) -> str:
    return runtime.service.persons.key("discord", str(person.id))


async def test_votes_cast_and_taken_back_while_the_bot_was_down_are_caught_up_after_a_restart(
    runtime: Any, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    caplog.set_level(logging.INFO, logger="bot.catchup")
    fake = fake_discord
    async with running_bot(runtime, fake) as client:
        assert await caught_up(client) == CaughtUp()  # nothing posted yet
        old = await asked(fake, ALICE, "asked two days ago", mention_bot=True)
        answer = await asked(fake, ALICE, "asked an hour ago", mention_bot=True)
        in_dm = await asked(fake, BOB, "asked in a DM", channel_id=fake.dm_channel_id)
        answer_id, old_id = int(answer["id"]), int(old["id"])
        await fake.react(ALICE, answer_id, "👍")
        await fake.react(BOB, answer_id, "👎")
        await fake.react(ALICE, old_id, "👍")
        await wait_for(lambda: len(votes(settings)) == 3)
    rows(
        settings.db_path,
        "UPDATE responses SET created_at = ? WHERE message_key = ?",
        time.time() - 48 * 3600,
        key(fake, old),
    )

    # While the bot is away: people vote, change their minds, and another bot joins in.
    await fake.react(CAROL, answer_id, "👍🏽")
    await fake.unreact(BOB, answer_id, "👎")
    await fake.react(BOB, answer_id, "👍")
    await fake.react(OTHER_BOT, answer_id, "👎")
    await fake.react(ALICE, answer_id, "🎉")
    await fake.react(ALICE, int(in_dm["id"]), "👎")
    await fake.unreact(ALICE, old_id, "👍")  # too old: stays counted
    fake.calls.clear()

    async with running_bot(runtime, fake, reconcile_hours=24) as client:
        summary = await caught_up(client)

    assert summary == CaughtUp(checked=2, added=3, retracted=1, failed=0)
    assert voters(settings, fake, answer) == sorted(
        [(person_key(runtime, ALICE), "👍"), (person_key(runtime, BOB), "👍"), (person_key(runtime, CAROL), "👍")]
    )
    assert voters(settings, fake, in_dm) == [(person_key(runtime, ALICE), "👎")]
    assert voters(settings, fake, old) == [(person_key(runtime, ALICE), "👍")]
    # Only the two recent answers were read, and only for the rating emoji (not 🎉).
    read = [call.path for call in fake.calls if call.method == "GET" and call.path.startswith("/channels/")]
    assert f"/channels/{fake.channel_id}/messages/{answer_id}" in read
    assert f"/channels/{fake.dm_channel_id}/messages/{in_dm['id']}" in read
    assert not [path for path in read if str(old_id) in path]
    assert not [path for path in read if "%F0%9F%8E%89" in path or "🎉" in path]
    assert "discord: caught up on 2 answer(s) from the last 24 h: 3 vote(s) added, 1 retracted" in caplog.text

    # A second restart finds nothing new: the bot's own thumbs never became votes.
    async with running_bot(runtime, fake) as client:
        assert await caught_up(client) == CaughtUp(checked=2, added=0, retracted=0, failed=0)
    assert len(votes(settings)) == 5


async def test_catching_up_reads_at_most_the_newest_answers_and_goes_on_after_an_error(
    runtime: Any, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    caplog.set_level(logging.INFO, logger="bot.catchup")
    fake = fake_discord
    async with running_bot(runtime, fake):
        first = await asked(fake, ALICE, "first", mention_bot=True)
        second = await asked(fake, ALICE, "second", mention_bot=True)
        third = await asked(fake, ALICE, "third", mention_bot=True)
    for message in (first, second, third):
        await fake.react(BOB, int(message["id"]), "👍")
    fake.deleted.add(int(third["id"]))  # deleted while the bot was away: 404
    fake.calls.clear()

    async with running_bot(runtime, fake, reconcile_max_messages=2) as client:
        summary = await caught_up(client)

    assert summary == CaughtUp(checked=1, added=1, retracted=0, failed=1)
    assert [len(voters(settings, fake, message)) for message in (first, second, third)] == [0, 1, 0]
    assert not [call for call in fake.calls if call.method == "GET" and str(first["id"]) in call.path]
    assert f"answer {key(fake, third)} is gone" in caplog.text


def pending_count(settings: Any) -> int:
    return int(rows(settings.db_path, "SELECT count(*) FROM pending_prompts")[0][0])


def answers_to(fake: FakeDiscord, message_id: int) -> list[dict[str, Any]]:
    """Every reply of the bot's to one message (a prompt answered twice has two)."""
    return [
        message
        for message in fake.bot_messages()
        if (message.get("message_reference") or {}).get("message_id") == str(message_id)
    ]


async def test_prompts_sent_while_down_are_answered_once_after_a_restart(
    runtime: Any, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    fake = fake_discord
    async with running_bot(runtime, fake) as client:
        assert (await after_downtime(client)).prompts == 0
        answered = await asked(fake, ALICE, "what is a tree?", mention_bot=True)
        await asked(fake, ALICE, "hello in a DM", channel_id=fake.dm_channel_id)

    # While the bot is away (the gateway drops these events: a new session starts afresh).
    in_channel = await fake.say(BOB, "what is a river?", mention_bot=True)
    in_thread = await fake.say(CAROL, "and a lake?", mention_bot=True, channel_id=fake.thread_id)
    in_dm = await fake.say(ALICE, "are you back?", channel_id=fake.dm_channel_id)
    left_alone = [
        await fake.say(BOB, "lunch, anyone?"),  # chatter, not addressed to the bot
        await fake.say(OTHER_BOT, "ping", mention_bot=True),  # a bot
        await fake.say(ALICE, "better: a tall plant", reply_to=int(answered["id"])),  # a correction
        await fake.say(BOB, "asked two days ago", mention_bot=True, at=time.time() - 48 * 3600),  # too old
    ]

    async with running_bot(runtime, fake, reconcile_hours=24) as client:
        assert (await after_downtime(client)).prompts == 3
        for prompt_id in (in_channel, in_thread, in_dm):
            await wait_for(lambda prompt_id=prompt_id: fake.answer_to(prompt_id), timeout=30)
        await wait_for(lambda: pending_count(settings) == 0)
        # The answers are ordinary answers: bound to their messages, so they can be voted on.
        answer = answers_to(fake, in_dm)[0]
        await fake.react(ALICE, int(answer["id"]), "👍")
        await wait_for(lambda: len(votes(settings)) == 1)
    assert "discord: found 3 prompt(s) missed while down in the last 24 h; answering them" in caplog.text
    assert [answers_to(fake, message_id) for message_id in left_alone] == [[]] * 4
    asked_texts = [text for (text,) in rows(settings.db_path, "SELECT text FROM prompts ORDER BY id")]
    assert sorted(asked_texts[2:]) == sorted(["what is a river?", "and a lake?", "are you back?"])

    # A second restart finds them answered, and answers nothing twice.
    async with running_bot(runtime, fake) as client:
        assert (await after_downtime(client)).prompts == 0
    assert [len(answers_to(fake, message_id)) for message_id in (in_channel, in_thread, in_dm)] == [1, 1, 1]


async def test_missed_prompts_are_bounded_and_an_unreadable_channel_is_skipped(
    runtime: Any, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    fake = fake_discord
    first = await fake.say(ALICE, "one", mention_bot=True)
    second = await fake.say(BOB, "two", mention_bot=True)
    third = await fake.say(CAROL, "three", mention_bot=True)
    in_thread = await fake.say(CAROL, "in a thread", mention_bot=True, channel_id=fake.thread_id)
    fake.fail_route("GET", f"/channels/{fake.thread_id}/messages", 403)

    async with running_bot(runtime, fake, reconcile_max_messages=2) as client:
        assert (await after_downtime(client)).prompts == 2
        await wait_for(lambda: fake.answer_to(second) and fake.answer_to(third))
        await wait_for(lambda: pending_count(settings) == 0)
    assert (fake.answer_to(first), fake.answer_to(in_thread)) == (None, None)
    assert f"cannot read the history of channel {fake.thread_id}: 403" in caplog.text

    # Turned off, nothing is read at all.
    fake.calls.clear()
    async with running_bot(runtime, fake, reconcile_hours=0) as client:
        assert (await after_downtime(client)).prompts == 0
    assert not [call for call in fake.calls if call.method == "GET" and call.path.endswith("/messages")]


async def test_stop_finishes_answers_in_flight_and_the_next_run_answers_the_rest(
    runtime: Any, fake_discord: FakeDiscord, settings: Any
) -> None:
    fake = fake_discord
    fake.slow_route("POST", "/channels/*/typing", 1.0)  # answers take a second to start
    async with running_bot(runtime, fake, shutdown_grace_s=10) as client:
        await after_downtime(client)
        finished = await fake.say(ALICE, "finish me", mention_bot=True)
        await wait_for(lambda: client.busy)
        await client.stop()  # within the grace: the answer in flight is posted before closing
    assert fake.answer_to(finished) is not None and pending_count(settings) == 0

    async with running_bot(runtime, fake, shutdown_grace_s=0.1) as client:
        await after_downtime(client)
        cut_short = await fake.say(BOB, "cut me short", mention_bot=True)
        await wait_for(lambda: client.busy)
        await client.stop()  # past the grace: it stays pending
    assert fake.answer_to(cut_short) is None and pending_count(settings) == 1

    fake.slow.clear()
    async with running_bot(runtime, fake) as client:
        await wait_for(lambda: fake.answer_to(cut_short), timeout=30)
        await wait_for(lambda: pending_count(settings) == 0)
        assert (await after_downtime(client)).prompts == 0  # left over, not missed: answered once
    assert len(answers_to(fake, cut_short)) == 1 and len(answers_to(fake, finished)) == 1


async def test_a_reaction_list_read_only_in_part_retracts_nothing_for_that_emoji(
    runtime: Any, fake_discord: FakeDiscord, settings: Any
) -> None:
    fake = fake_discord
    async with running_bot(runtime, fake):
        answer = await asked(fake, ALICE, "popular answer", mention_bot=True)
        answer_id = int(answer["id"])
        for person in (ALICE, BOB, CAROL):
            await fake.react(person, answer_id, "👍")
        await fake.react(BOB, answer_id, "👎")
        await wait_for(lambda: len(votes(settings)) == 4)
    await fake.unreact(ALICE, answer_id, "👍")  # 👍 now: bob, carol and the bot - 3 > 2 read
    await fake.unreact(BOB, answer_id, "👎")  # 👎 now: the bot alone - read in full

    async with running_bot(runtime, fake, max_voters_per_emoji=2) as client:
        summary = await caught_up(client)

    assert summary == CaughtUp(checked=1, added=0, retracted=1, failed=0)
    assert voters(settings, fake, answer) == sorted(
        [(person_key(runtime, person), "👍") for person in (ALICE, BOB, CAROL)]
    )


# --- attachments -------------------------------------------------------------------------


async def test_stats_is_answered_with_the_table_and_the_chart(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    answer = await asked(fake_discord, ALICE, "something to rate", mention_bot=True)
    await fake_discord.react(BOB, int(answer["id"]), "👍")
    await wait_for(lambda: votes(settings))

    prompt_id = await fake_discord.say(ALICE, "stats", mention_bot=True)
    reply = await wait_for(lambda: fake_discord.answer_to(prompt_id), timeout=30)

    [call] = [
        call for call in fake_discord.calls_to("POST", f"/channels/{fake_discord.channel_id}/messages") if call.files
    ]
    [(filename, data)] = call.files
    assert filename.endswith(".png") and data.startswith(b"\x89PNG\r\n\x1a\n")
    charts = list((settings.data_dir / "charts").glob("*.png"))
    assert [chart.read_bytes() for chart in charts] == [data]  # the chart the service drew
    assert call.body["content"] == reply["content"] and reply["content"]
    assert [attachment["filename"] for attachment in reply["attachments"]] == [filename]
    assert int(call.body["message_reference"]["message_id"]) == prompt_id
    await handlers_done()
    assert (int(reply["id"]), fake_discord.bot.id, "👍") not in fake_discord.reactions  # not a rateable answer
    assert len(rows(settings.db_path, "SELECT id FROM prompts")) == 1  # a command, not a prompt


async def test_stats_through_ask_carries_the_chart_in_the_follow_up(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    await fake_discord.ask(ALICE, "stats")
    call = await wait_for(lambda: fake_discord.calls_to("POST", "/webhooks/"), timeout=30)
    [(filename, data)] = call[0].files
    assert filename.endswith(".png") and data.startswith(b"\x89PNG")
    assert fake_discord.bot_messages()[-1]["attachments"][0]["filename"] == filename


async def test_a_comparison_gets_four_reactions_and_verdicts_are_stored(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    prompt_id = await fake_discord.say(ALICE, "compare: what is a tree?", mention_bot=True)
    answer = await wait_for(lambda: fake_discord.answer_to(prompt_id), timeout=30)
    answer_id = int(answer["id"])
    offered = {(answer_id, fake_discord.bot.id, emoji) for emoji in ("1️⃣", "2️⃣", "🤝", "👎")}
    await wait_for(lambda: offered <= fake_discord.reactions)
    assert answer["content"].startswith("1️⃣ ") and "\n2️⃣ " in answer["content"]
    await fake_discord.react(BOB, answer_id, "1️⃣")
    await wait_for(lambda: len(votes(settings)) == 2)
    await handlers_done()
    first = response_id(settings, fake_discord, answer)
    assert [(row[0] - first, row[2], row[3]) for row in votes(settings)] == [(0, "1️⃣", 1.0), (1, "1️⃣", -1.0)]
    await fake_discord.unreact(BOB, answer_id, "1️⃣")
    await wait_for(lambda: not votes(settings))
    await fake_discord.react(CAROL, answer_id, "👎")
    await wait_for(lambda: len(votes(settings)) == 2)
    await handlers_done()
    assert [(row[2], row[3]) for row in votes(settings)] == [("👎", -1.0), ("👎", -1.0)]


async def test_a_new_version_going_live_is_announced_in_the_chosen_channel(
    bot: DiscordBot, fake_discord: FakeDiscord, runtime: Any, tiny_model_dir: Any
) -> None:
    bot.announce_channel = str(fake_discord.channel_id)
    runtime.loop.announce = bot.announce
    publish_copy(runtime.loop.registry, tiny_model_dir, metrics={"perplexity": 9.5}, counts={"train_examples": 40})
    assert await runtime.loop.check_registry() == 1
    posted = await wait_for(
        lambda: [
            m
            for m in fake_discord.bot_messages(fake_discord.channel_id)
            if m["content"].startswith("Now serving model version 1.")
        ]
    )
    assert "Trained from version 0 on 40 examples" in posted[0]["content"]


async def test_events_read_while_closing_are_dropped_not_scheduled(runtime: Any, fake_discord: FakeDiscord) -> None:
    async with running_bot(runtime, fake_discord) as client:
        pass
    assert client.is_closed()
    # discord.py may still hand over an event it had read; with its loop let go, scheduling
    # the handler would fail and leave a never-awaited coroutine behind.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client.dispatch("message", None)
        gc.collect()
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("discord.py: on_")]


async def test_the_log_at_info_and_above_holds_no_user_id_or_prompt(
    runtime: Any, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """discord.py and the adapter, everything recorded at DEBUG: people's ids and words stay below INFO."""
    caplog.set_level(logging.DEBUG)
    dora = Person(424242424242424242, "dora")
    words = "my very private question about my health"
    async with running_bot(runtime, fake_discord):
        answer = await asked(fake_discord, dora, words, mention_bot=True)
        await fake_discord.react(dora, int(answer["id"]), "👍")
        await wait_for(lambda: votes(settings))
        await handlers_done()
    shown = [
        f"{record.name}: {record.getMessage()[:200]}"
        for record in caplog.records
        if record.levelno >= logging.INFO
        and (str(dora.id) in record.getMessage() or words in record.getMessage() or len(record.getMessage()) > 1_000)
    ]
    assert shown == []
    assert any(str(dora.id) in record.getMessage() for record in caplog.records)  # DEBUG does show them


# --- what the invite grants, enforced by the fake ---------------------------------------
async def test_a_mention_inside_a_thread_is_answered_with_the_invites_permissions(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    # The fake grants the bot only its invite's permissions; threads need Send Messages in Threads.
    answer = await asked(fake_discord, ALICE, "in a thread?", mention_bot=True, channel_id=fake_discord.thread_id)
    assert answer["channel_id"] == str(fake_discord.thread_id)
    # Marked answered just after the thumbs are added: waited for, not raced.
    await wait_for(lambda: rows(settings.db_path, "SELECT count(*) FROM pending_prompts") == [(0,)], timeout=10)


async def test_stats_where_files_are_refused_still_gets_the_table_and_says_why(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    fake = fake_discord
    fake.deny(fake.channel_id, ATTACH_FILES)  # the server took Attach Files away in this channel
    prompt_id = await fake.say(ALICE, "stats", mention_bot=True)
    reply = await wait_for(lambda: fake.answer_to(prompt_id), timeout=30)

    assert reply["attachments"] == [] and reply["content"]
    refused = [call for call in fake.calls_to("POST", f"/channels/{fake.channel_id}/messages") if call.files]
    assert len(refused) == 1  # tried once with the chart, refused (403, 50013), then the text alone
    await wait_for(lambda: pending_count(settings) == 0)
    assert "needs Attach Files" in caplog.text
    assert not [record for record in caplog.records if "handler failed" in record.getMessage()]


async def test_a_prompt_where_the_bot_may_not_post_is_given_up_with_a_clear_line_not_retried_forever(
    runtime: Any, fake_discord: FakeDiscord, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    fake = fake_discord
    fake.deny(fake.channel_id, SEND_MESSAGES | SEND_MESSAGES_IN_THREADS)
    async with running_bot(runtime, fake):
        prompt_id = await fake.say(ALICE, "can you hear me?", mention_bot=True)
        await wait_for(lambda: "needs Send Messages" in caplog.text, timeout=30)
        await wait_for(lambda: pending_count(settings) == 0)
    assert fake.answer_to(prompt_id) is None
    assert not [record for record in caplog.records if "handler failed" in record.getMessage()]
    # The next run does not try it again (nor does it look for prompts where it may not answer).
    posts = len(fake.calls_to("POST", f"/channels/{fake.channel_id}/messages"))
    async with running_bot(runtime, fake) as client:
        assert (await after_downtime(client)).prompts == 0
    assert len(fake.calls_to("POST", f"/channels/{fake.channel_id}/messages")) == posts


async def test_a_reply_to_an_ask_answer_arrives_empty_and_gets_a_hint_once(
    bot: DiscordBot, fake_discord: FakeDiscord, settings: Any
) -> None:
    fake = fake_discord
    await fake.ask(ALICE, "what is a haiku?")
    follow_up = await wait_for(lambda: [m for m in fake.bot_messages() if m.get("interaction_metadata")], timeout=30)
    answer_id = int(follow_up[0]["id"])
    # Discord pings no one for a reply to an interaction's response, so the bot sees no text.
    first = await fake.say(ALICE, "better: a short poem", reply_to=answer_id)
    hint = await wait_for(lambda: fake.answer_to(first), timeout=30)
    assert "mention me" in hint["content"]
    assert rows(settings.db_path, "SELECT count(*) FROM corrections") == [(0,)]
    # Once per person for a while; and mentioning the bot in the reply works.
    again = await fake.say(ALICE, "hello?", reply_to=answer_id)
    mentioned = await fake.say(ALICE, "better: a short poem", reply_to=answer_id, mention_bot=True)
    await wait_for(lambda: rows(settings.db_path, "SELECT text FROM corrections") == [("a short poem",)])
    await handlers_done()
    assert fake.answer_to(again) is None and fake.answer_to(mentioned) is None


async def test_switching_ask_from_global_to_one_server_leaves_one_command(
    runtime: Any, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    fake = fake_discord
    global_bot = DiscordBot(service=runtime.service, token=TOKEN, guild_ready_timeout=0.2)
    serving = asyncio.create_task(global_bot.serve())
    await wait_for(lambda: global_bot.is_ready(), timeout=15)
    await global_bot.close()
    await asyncio.wait_for(serving, timeout=10)
    assert [command["name"] for command in fake.commands[None]] == ["ask"]

    async with running_bot(runtime, fake):  # THUMBTUNE_DISCORD_GUILD_ID set
        await wait_for(lambda: fake.commands.get(str(fake.guild_id)), timeout=15)
    assert fake.commands[None] == []
    assert [command["name"] for command in fake.commands[str(fake.guild_id)]] == ["ask"]
    assert "removed the global /ask" in caplog.text
