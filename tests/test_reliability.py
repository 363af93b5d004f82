"""Crashes, floods and malformed input: nothing lost, nothing doubled, nothing garbage stored."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.commands import parse_command
from bot.events import IncomingPrompt, IncomingReaction, message_key
from bot.feedback import EmojiTable, normalize_emoji
from bot.limits import RateLimiter
from storage.dialogue import USER, cut_answer, render_prompt
from storage.repository import VoteOutcome
from tests.helpers import wait_for


def test_sigkill_during_a_vote_burst_loses_no_acknowledged_vote(settings_env: dict[str, str]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBTUNE_")}
    env.update(settings_env, THUMBTUNE_MAX_NEW_TOKENS="4")
    script = "".join(f"question number {i}\n+\n" for i in range(400))
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(script)
    process.stdin.flush()
    acknowledged = 0
    deadline = time.monotonic() + 120
    # Read acknowledgements until a good number arrived, then kill without warning.
    while acknowledged < 25 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        acknowledged += line.strip() == "(recorded 👍)"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert acknowledged >= 25

    db = Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.db"
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        votes = connection.execute("SELECT response_id FROM votes ORDER BY response_id").fetchall()
        answers = connection.execute("SELECT count(*) FROM responses").fetchone()[0]
    voted = [row[0] for row in votes]
    assert len(voted) >= acknowledged  # every acknowledged vote is there
    assert len(voted) == len(set(voted))  # and none twice
    assert voted == list(range(1, len(voted) + 1))
    assert answers >= len(voted)

    # The bot starts again on the same database and keeps counting from there.
    again = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input="one more\n+\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM votes").fetchone()[0] == len(voted) + 1


async def test_a_flood_of_prompts_and_reactions_is_answered_or_refused_and_counted_once(runtime):
    service = runtime.service
    service.answers.rate_limiter = RateLimiter(per_minute=60, burst=4)
    people = [f"U{i}" for i in range(50)]

    async def ask(index: int):
        person = people[index % len(people)]
        return person, await service.on_prompt(
            IncomingPrompt(platform="slack", channel="C1", user=person, text=f"question {index}", event_id=f"P{index}")
        )

    results = await asyncio.gather(*(ask(i) for i in range(200)))
    answered = [(person, reply) for person, reply in results if reply is not None and reply.ok]
    refused = [reply for _, reply in results if reply is not None and not reply.ok]
    assert len(answered) + len(refused) == 200  # nobody is left without a reply
    assert answered, "some prompts must be answered"
    for reply in refused:
        assert "busy" in reply.text or "Slow down" in reply.text
    assert runtime.generator.queued() == 0

    async def react(index: int, reply, voter: str, emoji: str):
        key = message_key("slack", "C1", f"{reply.response_ids[0]}.0")
        await service.answer_posted(reply.response_ids[0], key)
        event = f"R{index}-{voter}-{emoji}"
        reaction = IncomingReaction(platform="slack", message_key=key, user=voter, emoji=emoji, event_id=event)
        # Each event is delivered twice (a platform retry) at the same time.
        return await asyncio.gather(service.on_reaction(reaction), service.on_reaction(reaction))

    outcomes = await asyncio.gather(
        *(
            react(i, reply, voter, emoji)
            for i, (_, reply) in enumerate(answered)
            for voter, emoji in (("V1", "+1"), ("V2", "-1::skin-tone-2"))
        )
    )
    for pair in outcomes:
        assert sorted(o.value for o in pair) == sorted([VoteOutcome.RECORDED.value, VoteOutcome.DUPLICATE_EVENT.value])
    votes = await runtime.repository.votes_since(0)
    assert len(votes) == 2 * len(answered)
    assert await runtime.database.integrity_check() == "ok"


async def test_the_generator_queue_never_grows_past_its_bound(runtime):
    generator = runtime.generator
    bound = generator._queue.maxsize
    tasks = [asyncio.create_task(service_prompt(runtime, i)) for i in range(bound * 3)]
    peak = 0
    while not all(task.done() for task in tasks):
        peak = max(peak, generator.queued())
        await asyncio.sleep(0.001)
    replies = [task.result() for task in tasks]
    assert peak <= bound
    assert any(not reply.ok and "busy" in reply.text for reply in replies)
    await wait_for(lambda: generator.queued() == 0)


async def service_prompt(runtime, index: int):
    return await runtime.service.on_prompt(
        IncomingPrompt(platform="shell", channel="local", user="me", text=f"hello {index}")
    )


# --- property-based: malformed input never crashes and never stores garbage ----------------


@given(st.text(max_size=40))
def test_normalize_emoji_is_idempotent_and_never_crashes(name: str):
    once = normalize_emoji(name)
    assert normalize_emoji(once) == once or once.startswith(":")


@given(st.text(max_size=300), st.lists(st.tuples(st.text(max_size=50), st.text(max_size=50)), max_size=3))
def test_rendered_prompts_always_end_with_the_bot_marker_and_keep_one_turn_per_line(question, history):
    prompt = render_prompt(question, history)
    assert prompt.endswith("Bot:")
    assert prompt.count("\n") == 2 * len(history) + 1
    assert prompt.splitlines()[-2].startswith(USER)


@given(st.text(max_size=200))
def test_cut_answers_are_single_line_and_never_contain_a_turn_marker(continuation: str):
    answer = cut_answer(continuation)
    assert "\n" not in answer
    assert answer == answer.strip()


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    emoji=st.one_of(st.text(max_size=30), st.sampled_from(["+1", "-1::skin-tone-9", "👍🏻", ":thumbsdown:", "🚩"])),
    key=st.one_of(st.text(max_size=40), st.just("slack:C1:1.0")),
    user=st.text(max_size=30),
)
async def test_random_reactions_never_crash_or_store_votes_on_unknown_messages(runtime, emoji, key, user):
    service = runtime.service
    reaction = IncomingReaction(platform="slack", message_key=key, user=user, emoji=emoji)
    outcome = await service.on_reaction(reaction)
    removed = await service.on_reaction_removed(reaction)
    assert outcome in (VoteOutcome.UNKNOWN_EMOJI, VoteOutcome.UNKNOWN_RESPONSE)
    assert removed in (VoteOutcome.UNKNOWN_EMOJI, VoteOutcome.UNKNOWN_RESPONSE)
    assert await runtime.repository.votes_since(0) == []


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=3000))
@example(text="ROLLBACK")  # a chat command: run, not stored (found by this test)
async def test_random_prompts_are_answered_or_refused_and_stored_as_given(runtime, text):
    async with runtime.database.reading() as db:
        [(before,)] = await (await db.execute("SELECT count(*) FROM prompts")).fetchall()
    reply = await runtime.service.on_prompt(IncomingPrompt(platform="shell", channel="local", user="fuzz", text=text))
    assert reply is not None and reply.text
    async with runtime.database.reading() as db:
        [(after,)] = await (await db.execute("SELECT count(*) FROM prompts")).fetchall()
        last = await (await db.execute("SELECT text FROM prompts ORDER BY id DESC LIMIT 1")).fetchone()
    if parse_command(text) is not None:
        # A chat command ("ROLLBACK", " stats ") is run and answered, never stored as a prompt.
        assert after == before
        return
    if reply.ok:
        assert last is not None and last[0] == text.strip()
    else:
        assert any(word in reply.text for word in ("empty", "characters", "busy", "Done"))


def test_emoji_table_rejects_nothing_it_does_not_know():
    table = EmojiTable({"👍": 1})
    assert table.reward("") is None and table.reward("::skin-tone-2") is None
