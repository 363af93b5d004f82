"""Implicit feedback through the real adapters (fake Slack and Discord at the network
boundary, the shell on pipes): the asker's next message is read against the answer before
it, stored once as its own kind of row, linked to that answer and version, and forgotten
with its author. Plus the reading itself, on worked examples."""

from __future__ import annotations

import io
from typing import Any

import pytest

from bot.adapters.discord import DiscordBot
from bot.adapters.shell import ShellChat
from bot.events import IncomingPrompt
from bot.implicit import asked_again, content_words, read_reply
from tests.fakes.discord import FakeDiscord
from tests.helpers import wait_for
from tests.test_discord import ALICE, BOB, asked, handlers_done, key, running_bot
from tests.test_slack import CHANNEL, ask_in_channel, bot, config, fake, logged, rows  # noqa: F401 (fixtures)

session_loop = pytest.mark.asyncio(loop_scope="session")  # the runtime fixture lives on the session loop

SIGNALS = (
    "SELECT s.kind, s.value > 0, r.message_key, s.model_version, s.person, s.better_response_id"
    " FROM implicit_signals s JOIN responses r ON r.id = s.response_id ORDER BY s.id"
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("thanks!", "reply_positive"),
        ("great, thank you", "reply_positive"),
        ("that's wrong", "reply_negative"),
        ("not what I asked", "reply_negative"),
        ("no, that makes no sense", "reply_negative"),
        ("this is useless", "reply_negative"),
        ("what is a great poem?", None),  # a question goes on with the conversation
        ("and in winter", None),  # the conversation simply continues: no approval
        ("ok", None),
    ],
)
def test_a_reply_reads_as_thanks_a_complaint_or_nothing(text: str, kind: str | None) -> None:
    assert read_reply(text).kind == kind


@pytest.mark.parametrize(
    ("first", "second", "kind"),
    [
        ("what is a haiku", "What's a haiku?", "retry"),
        ("what is a haiku", "haikus?", "retry"),
        ("explain volcano eruptions", "how do volcanoes erupt under the sea", "rephrase"),
        ("how do I cook brown rice", "brown rice cooking time", "rephrase"),
        # One content word in common is a topic in common, not the question again.
        ("do you like pizza", "do you like cats", None),
        ("what is a good breakfast", "what is a good pet", None),
        ("what is python", "who created python", None),  # a follow-up question on the topic
        ("I am tired of my job", "I am so tired", None),
        # Words that only begin alike are different words ("international", "interesting").
        ("international student visa", "interesting student stories", None),
        ("what is a haiku", "how do volcanoes form", None),
    ],
)
def test_the_same_question_is_a_retry_and_other_words_a_rephrase(first: str, second: str, kind: str | None) -> None:
    assert asked_again(first, second) == kind


def test_words_are_compared_by_their_stems() -> None:
    assert content_words("volcanoes erupting") == content_words("the volcano's eruptions") == {"volcano", "erupt"}
    assert content_words("cities studied") == content_words("a city studying") == {"city", "study"}
    assert content_words("running, stopped, makes") == content_words("run, stop, make") == {"run", "stop", "mak"}
    assert content_words("glass buses") == {"glass", "bus"}  # no stem shorter than three letters


# --- the shell ---------------------------------------------------------------------------
@session_loop
async def test_shell_next_lines_become_signals_once_and_forget_me_takes_them(runtime) -> None:
    lines = "what is a haiku\nwhat is a haiku\nthank you, perfect\nexplain volcano eruptions\nforget me\n"
    out = io.StringIO()
    await ShellChat(runtime.service, stdin=io.StringIO(lines), stdout=out, user="me").serve()
    answers = [row[0] for row in await rows(runtime, "SELECT message_key FROM responses WHERE candidate = 0")]
    assert answers == []  # forgotten: the answers to their prompts went with them
    assert await rows(runtime, "SELECT id FROM implicit_signals") == []
    assert "reply signal(s)" in out.getvalue()


@session_loop
async def test_shell_retry_rephrase_and_thanks_are_linked_to_their_answers(runtime) -> None:
    lines = (
        "what is a haiku\nwhat is a haiku?\nthank you, perfect\n"
        "explain volcano eruptions\nhow do volcanoes erupt under the sea\n"
    )
    await ShellChat(runtime.service, stdin=io.StringIO(lines), stdout=io.StringIO(), user="me").serve()
    keys = [row[0] for row in await rows(runtime, "SELECT message_key FROM responses WHERE candidate = 0 ORDER BY id")]
    ids = [row[0] for row in await rows(runtime, "SELECT id FROM responses WHERE candidate = 0 ORDER BY id")]
    stored = await rows(runtime, SIGNALS)
    # The retry: the first answer is worse than the second; the thanks is for the second
    # answer; the fourth question in other words says the fourth answer failed.
    assert [(kind, positive, message) for kind, positive, message, *_ in stored] == [
        ("retry", 0, keys[0]),
        ("reply_positive", 1, keys[1]),
        ("rephrase", 0, keys[3]),
    ]
    assert stored[0][5] == ids[1] and {row[3] for row in stored} == {0} and {row[4] for row in stored} != {"me"}


@session_loop
async def test_in_a_channel_only_the_same_question_in_other_words_is_a_rephrase(runtime) -> None:
    """No conversation ties a channel's messages together: the next question of the same
    person is read against their last answer there, and one shared word is no rephrase."""
    from bot.events import IncomingPrompt

    runtime.service.answers.rate_limiter = None  # seven questions in a row from one person
    questions = (
        "do you like pizza",
        "do you like cats",  # "like" in common: another question
        "what is a good breakfast",
        "what is a good pet",  # "good" in common
        "how do volcanoes erupt under the sea",
        "explain volcano eruptions",  # the question in other words
        "Explain volcano eruptions?",  # the same question again
    )
    for question in questions:
        reply = await runtime.service.on_prompt(
            IncomingPrompt(platform="slack", channel="C42", user="U7", text=question, conversation=None)
        )
        assert reply is not None and reply.ok
    ids = [row[0] for row in await rows(runtime, "SELECT id FROM responses WHERE candidate = 0 ORDER BY id")]
    stored = await rows(runtime, "SELECT kind, response_id, better_response_id FROM implicit_signals ORDER BY id")
    assert stored == [("rephrase", ids[4], None), ("retry", ids[5], ids[6])]


@session_loop
async def test_implicit_off_reads_nothing_beyond_reactions(runtime) -> None:
    runtime.service.answers.implicit = runtime.service.implicit = None
    lines = "what is a haiku\nwhat is a haiku\nthat's wrong\n"
    await ShellChat(runtime.service, stdin=io.StringIO(lines), stdout=io.StringIO(), user="me").serve()
    assert await rows(runtime, "SELECT id FROM implicit_signals") == []


# --- Slack -------------------------------------------------------------------------------
@session_loop
async def test_slack_a_thread_reply_is_stored_once_and_a_retried_event_changes_nothing(
    bot,  # noqa: F811 (the fixture imported from test_slack)
    fake,  # noqa: F811
    runtime,
    caplog,
) -> None:
    question, answer = await ask_in_channel(fake, "what is a haiku?", user="U1")
    thanks = fake.envelope(
        {
            "type": "message",
            "channel": CHANNEL,
            "channel_type": "channel",
            "user": "U1",
            "text": "thank you, that is perfect",
            "ts": "1800000000.000009",
            "thread_ts": question.ts,
        }
    )
    assert (await fake.redeliver(thanks)).status == 200
    assert (await fake.redeliver(thanks, retry_num=1)).status == 200
    await fake.reply(channel=CHANNEL, user="U3", text="that's wrong.", thread_ts=question.ts)  # not the asker
    await wait_for(lambda: logged(caplog, "-> duplicate event") >= 1)
    await fake.settle()
    stored = await rows(runtime, SIGNALS)
    assert [row[:4] for row in stored] == [("reply_positive", 1, f"slack:{CHANNEL}:{answer.ts}", 0)]
    assert stored[0][4] != "U1"  # a person key, never the platform id
    assert len(fake.calls_to("chat.postMessage")) == 1  # a reply is not a question

    # The same question again in the thread (a mention): a retry, the new answer preferred.
    _, second = await ask_in_channel(fake, "what is a haiku", user="U1", thread_ts=question.ts)
    await wait_for(lambda: rows(runtime, "SELECT id FROM implicit_signals WHERE kind = 'retry'"))
    [(better,)] = await rows(runtime, "SELECT id FROM responses WHERE message_key = ?", f"slack:{CHANNEL}:{second.ts}")
    retry = await rows(runtime, SIGNALS + "")
    assert [(row[0], row[2], row[5]) for row in retry if row[0] == "retry"] == [
        ("retry", f"slack:{CHANNEL}:{answer.ts}", better)
    ]

    # forget me: their signals go with them.
    message = await fake.dm(channel="D0009", user="U1", text="forget me")
    await wait_for(lambda: fake.answers_in_thread("D0009", message.ts))
    assert await rows(runtime, "SELECT id FROM implicit_signals") == []


# --- Discord -----------------------------------------------------------------------------
@session_loop
async def test_discord_a_reply_mentioning_the_bot_is_read_once_and_forgotten(
    runtime: Any, fake_discord: FakeDiscord, settings: Any
) -> None:
    async with running_bot(runtime, fake_discord) as client:
        assert isinstance(client, DiscordBot)
        answer = await asked(fake_discord, ALICE, "what is a tree?", mention_bot=True)
        complaint = await fake_discord.say(ALICE, "that's wrong", mention_bot=True, reply_to=int(answer["id"]))
        await wait_for(lambda: fake_discord.answer_to(complaint), timeout=30)
        # The gateway sends the very same message again (a replay): nothing new is stored.
        await fake_discord.dispatch("MESSAGE_CREATE", fake_discord.messages[complaint])
        await asked(fake_discord, BOB, "that's wrong", mention_bot=True)  # Bob saw no answer: nothing
        await handlers_done()
        stored = await rows(runtime, SIGNALS)
        assert [row[:4] for row in stored] == [("reply_negative", 0, key(fake_discord, answer), 0)]
        forgotten = await fake_discord.say(ALICE, "forget me", mention_bot=True)
        await wait_for(lambda: fake_discord.answer_to(forgotten), timeout=30)
        await handlers_done()
        assert await rows(runtime, "SELECT id FROM implicit_signals") == []


@session_loop
async def test_discord_asking_again_is_a_retry_and_other_words_a_rephrase(
    runtime: Any, fake_discord: FakeDiscord, settings: Any
) -> None:
    async with running_bot(runtime, fake_discord) as client:
        assert isinstance(client, DiscordBot)
        first = await asked(fake_discord, ALICE, "why do volcanoes erupt?", mention_bot=True)
        second = await asked(fake_discord, ALICE, "why do volcanoes erupt", mention_bot=True)  # the same again
        third = await asked(fake_discord, ALICE, "what makes a volcano erupt so violently", mention_bot=True)
        await asked(fake_discord, BOB, "why do volcanoes erupt?", mention_bot=True)  # Bob's first question
        await handlers_done()
        stored = await rows(runtime, SIGNALS)
        [(better,)] = await rows(runtime, "SELECT id FROM responses WHERE message_key = ?", key(fake_discord, second))
        # Asking again: the first answer worse than the new one, kept as a pair; other words:
        # the answer before it failed. Each linked to its answer and the version that wrote it.
        assert [(row[0], row[1], row[2], row[3], row[5]) for row in stored] == [
            ("retry", 0, key(fake_discord, first), 0, better),
            ("rephrase", 0, key(fake_discord, second), 0, None),
        ]
        assert third is not None
        forgotten = await fake_discord.say(ALICE, "forget me", mention_bot=True)
        await wait_for(lambda: fake_discord.answer_to(forgotten), timeout=30)
        await handlers_done()
        assert await rows(runtime, "SELECT id FROM implicit_signals") == []


@session_loop
async def test_models_shows_each_kinds_agreement_with_votes(runtime) -> None:
    from bot.agreement import agreement_table
    from bot.events import IncomingReaction, message_key

    chat = ShellChat(runtime.service, stdin=io.StringIO("what is a haiku\nthat's wrong\n"), stdout=io.StringIO())
    await chat.serve()
    [(first,)] = await rows(runtime, "SELECT response_id FROM implicit_signals")
    reaction = IncomingReaction(platform="shell", message_key=message_key("shell", str(first)), user="u", emoji="👎")
    await runtime.service.on_reaction(reaction)
    table = await agreement_table(runtime.repository)
    assert "reply_negative" in table.splitlines()[2] and "100%" in table.splitlines()[2]
    assert "default: nothing to calibrate on" in table.splitlines()[1]  # reply_positive
    assert table in await runtime.loop.models()  # the `models` chat command shows it


def test_simulated_people_who_reply_give_signals_that_follow_their_taste(tiny_model_dir, tmp_path) -> None:
    """No training (0 rounds): the replies and retries of people with no mistakes agree with their taste."""
    from bot.simulate import SimulationOptions, run_simulation

    options = SimulationOptions(
        rounds=0,
        prompts=16,
        users=3,
        model=tiny_model_dir,
        data_dir=tmp_path / "sim",
        vote_share=0.0,
        reply_share=1.0,
        reply_noise=0.0,
        retry_share=1.0,
        best_of=1,
    )
    signals = run_simulation(options)["signals"]
    assert {"reply_positive", "reply_negative"} & set(signals)
    assert all(kind["agreement"] == 1.0 for kind in signals.values()), signals


def test_simulated_people_who_ask_in_other_words_give_rephrase_signals(tiny_model_dir, tmp_path) -> None:
    from bot.simulate import SimulationOptions, rephrased, run_simulation

    assert asked_again("will it rain tomorrow", rephrased("will it rain tomorrow")) == "rephrase"
    options = SimulationOptions(
        rounds=0,
        prompts=24,
        users=3,
        model=tiny_model_dir,
        data_dir=tmp_path / "sim",
        vote_share=0.0,
        rephrase_share=1.0,
        best_of=1,
    )
    signals = run_simulation(options)["signals"]
    # Only disliked answers are asked again, so every rephrase agrees with the taste.
    assert set(signals) == {"rephrase"} and signals["rephrase"]["signals"] >= 3, signals
    assert signals["rephrase"]["agreement"] == 1.0


def test_simulated_people_do_the_same_with_implicit_off_and_the_bot_reads_only_reactions(
    tiny_model_dir, tmp_path
) -> None:
    """The same seed with THUMBTUNE_IMPLICIT on and off (no training): the same answers and
    votes, the replies and retries made just the same, and signals stored only when on."""
    import sqlite3

    from bot.simulate import SimulationOptions, run_simulation

    def simulate(implicit: bool) -> tuple[dict, list[tuple], int]:
        options = SimulationOptions(
            rounds=0,
            prompts=16,
            users=3,
            seed=2,
            model=tiny_model_dir,
            data_dir=tmp_path / str(implicit),
            vote_share=0.5,
            voters_per_answer=1,
            reply_share=1.0,
            retry_share=1.0,
            best_of=1,
            implicit=implicit,
        )
        report = run_simulation(options)
        with sqlite3.connect(tmp_path / str(implicit) / "simulate.db") as db:
            votes = db.execute(
                "SELECT r.text, v.emoji FROM votes v JOIN responses r ON r.id = v.response_id ORDER BY v.id"
            ).fetchall()
            signals = db.execute("SELECT COUNT(*) FROM implicit_signals").fetchone()[0]
        return report, votes, signals

    (on, on_votes, on_signals), (off, off_votes, off_signals) = simulate(True), simulate(False)
    assert on_signals > 0 and on["signals"]
    assert off_signals == 0 and off["signals"] == {}
    assert 0 < on["votes"] == off["votes"] == len(off_votes) < 16
    assert on_votes == off_votes  # the same answers and votes (voter keys are salted per database)
    assert on["versions"][0]["approval"] == off["versions"][0]["approval"]


async def test_a_new_question_in_the_channel_is_not_a_verdict_by_its_mood(runtime) -> None:
    """Outside the answer's conversation only words about an answer count; inside it, the mood too."""
    service = runtime.service
    service.answers.rate_limiter = None  # one person asking fast

    async def ask(text: str, conversation: str | None = None) -> None:
        prompt = IncomingPrompt(platform="slack", channel="C7", user="U7", text=text, conversation=conversation)
        reply = await service.on_prompt(prompt)
        assert reply is not None and reply.ok

    await ask("what is a haiku")
    await ask("I am so tired")  # a new topic in the channel: no complaint about the haiku
    assert await rows(runtime, "SELECT kind FROM implicit_signals") == []
    await ask("that's wrong")  # about the answer before it, wherever it is said
    await ask("what is rain", conversation="t1")
    await ask("I am so tired", conversation="t1")  # in the answer's own thread: its mood is a verdict
    kinds = await rows(
        runtime,
        "SELECT s.kind, p.text FROM implicit_signals s JOIN responses r ON r.id = s.response_id"
        " JOIN prompts p ON p.id = r.prompt_id ORDER BY s.id",
    )
    assert kinds == [("reply_negative", "I am so tired"), ("reply_negative", "what is rain")]
