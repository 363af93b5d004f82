"""Commit, then acknowledge: what Slack was told it delivered is stored, and answered.

Real `python -m bot run --adapter slack` processes (HTTP mode) against the fake Slack,
real signals (SIGKILL the moment a 200 arrives, SIGTERM mid-answer), and the real SQLite
file read afterwards; a database that refuses writes in-process, in HTTP and Socket Mode.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.slack import NOT_TAKEN, SlackBot, SlackConfig
from tests.fakes.slack import FakeSlack, NoAck
from tests.helpers import wait_for

# The fake Slack and the runtime live on the session loop; the tests must share it.
pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "test-signing-secret"
CHANNEL = "C0001"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def slack_bot_process(fake: FakeSlack, log_path: Path, **env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot run --adapter slack` in HTTP mode, ready for events; killed if still running at the end."""
    port = _free_port()
    environment = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "THUMBTUNE_HTTP_HOST": "127.0.0.1",
        "THUMBTUNE_HTTP_PORT": str(port),
        **env,
    }
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--adapter",
            "slack",
            env=environment,
            stdout=log_file,
            stderr=log_file,
            cwd=ROOT,
        )
    try:
        await wait_for(lambda: "listening for events" in _text(log_path) or process.returncode is not None, timeout=120)
        assert process.returncode is None, _text(log_path)[-2000:]
        fake.events_url = f"http://127.0.0.1:{port}/slack/events"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def sqlite_file(settings_env: dict[str, str]) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.db")
    try:
        yield connection
    finally:
        connection.close()


def _rows(settings_env: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    with sqlite_file(settings_env) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET).running() as slack:
        yield slack


async def test_a_mention_and_a_vote_acknowledged_before_sigkill_are_stored_and_the_mention_is_answered_after_restart(
    settings_env, fake, tmp_path
):
    # The generator waits a second for companions before each batch: the kill lands before any answer.
    slow = {"THUMBTUNE_BATCH_WINDOW_MS": "1000", "THUMBTUNE_RECONCILE_HOURS": "0"}
    log_path = tmp_path / "bot.log"
    async with slack_bot_process(fake, log_path, **slow) as process:
        first = await fake.mention(channel=CHANNEL, user="U1", text="first question")
        await wait_for(lambda: fake.answers_in_thread(CHANNEL, first.ts), timeout=60)
        answer = fake.answers_in_thread(CHANNEL, first.ts)[0]
        await wait_for(lambda: len(answer.reactions) == 2)

        question = await fake.mention(channel=CHANNEL, user="U1", text="what is a haiku?")
        vote = await fake.react(user="U2", message=answer, name="+1")
        process.send_signal(signal.SIGKILL)  # the moment the vote's 200 arrived
        await process.wait()
    assert vote.status == 200
    assert not fake.answers_in_thread(CHANNEL, question.ts)  # killed before answering

    # What was acknowledged is in the file: the vote, and the mention as a pending prompt.
    assert _rows(settings_env, "SELECT emoji FROM votes") == [("👍",)]
    assert _rows(settings_env, "SELECT channel, thread, text FROM pending_prompts") == [
        (CHANNEL, question.ts, "what is a haiku?")
    ]

    async with slack_bot_process(fake, log_path, **slow):
        await wait_for(lambda: fake.answers_in_thread(CHANNEL, question.ts), timeout=60)
        late = fake.answers_in_thread(CHANNEL, question.ts)
        await wait_for(lambda: _rows(settings_env, "SELECT count(*) FROM pending_prompts") == [(0,)])
    assert len(late) == 1
    assert _rows(settings_env, "SELECT p.text, r.message_key FROM prompts p JOIN responses r ON r.prompt_id = p.id")[
        -1
    ] == ("what is a haiku?", f"slack:{CHANNEL}:{late[0].ts}")
    assert _rows(settings_env, "SELECT count(*) FROM votes") == [(1,)]  # stored once


async def test_an_answer_slack_accepted_just_before_sigkill_is_recorded_after_the_restart_not_posted_twice(
    settings_env, fake, tmp_path
):
    quiet = {"THUMBTUNE_RECONCILE_HOURS": "0"}  # only what the kill left pending is looked at
    log_path = tmp_path / "bot.log"
    async with slack_bot_process(fake, log_path, **quiet) as process:
        accepted = fake.hold("chat.postMessage")  # Slack keeps the answer; its reply is held back
        question = await fake.mention(channel=CHANNEL, user="U1", text="what is a haiku?")
        await wait_for(lambda: fake.answers_in_thread(CHANNEL, question.ts), timeout=60)
        process.send_signal(signal.SIGKILL)  # before the bot hears that Slack took it
        await process.wait()
    accepted.set()
    [posted] = fake.answers_in_thread(CHANNEL, question.ts)
    # The answer is stored, never bound to its message; the prompt is still pending.
    assert _rows(settings_env, "SELECT message_key FROM responses") == [(None,)]
    assert _rows(settings_env, "SELECT count(*) FROM pending_prompts WHERE prompt_id IS NOT NULL") == [(1,)]

    async with slack_bot_process(fake, log_path, **quiet):
        await wait_for(lambda: _rows(settings_env, "SELECT count(*) FROM pending_prompts") == [(0,)], timeout=60)
        await wait_for(lambda: set(posted.reactions) == {"+1", "-1"})  # offered for rating, as a live answer
    assert fake.answers_in_thread(CHANNEL, question.ts) == [posted]  # not posted a second time
    assert len(fake.calls_to("chat.postMessage")) == 1
    assert [call.args["ts"] for call in fake.calls_to("conversations.replies")] == [question.ts]
    assert _rows(settings_env, "SELECT message_key FROM responses") == [(f"slack:{CHANNEL}:{posted.ts}",)]
    assert "was posted before the restart; recorded, not posted again" in _text(log_path)


async def test_sigterm_finishes_the_answer_in_flight_refuses_new_events_and_exits_0(settings_env, fake, tmp_path):
    log_path = tmp_path / "bot.log"
    slow = {"THUMBTUNE_BATCH_WINDOW_MS": "1000", "THUMBTUNE_RECONCILE_HOURS": "0"}
    async with slack_bot_process(fake, log_path, **slow) as process:
        question = await fake.mention(channel=CHANNEL, user="U1", text="answer me before you go")
        process.send_signal(signal.SIGTERM)  # mid-answer: the generator is still waiting for companions
        await wait_for(lambda: "stopping gracefully" in _text(log_path), timeout=10)
        refused = await fake.mention(channel=CHANNEL, user="U1", text="too late")
        code = await asyncio.wait_for(process.wait(), 60)
    output = _text(log_path)
    assert code == 0, output[-2000:]
    assert len(fake.answers_in_thread(CHANNEL, question.ts)) == 1  # the answer in flight was finished
    assert not fake.answers_in_thread(CHANNEL, refused.ts)
    assert _rows(settings_env, "SELECT text FROM prompts") == [("answer me before you go",)]
    assert _rows(settings_env, "SELECT count(*) FROM pending_prompts") == [(0,)]
    # The mention sent while stopping was answered 503 (no ack): Slack sends it again to the next run.
    statuses = {
        d.envelope["event"]["type"]: d.status for d in fake.deliveries if d.envelope["event"].get("ts") == refused.ts
    }
    assert statuses == {"app_mention": 503, "message": 503}
    assert "Traceback" not in output


@pytest.fixture
async def bot(runtime, fake: FakeSlack) -> AsyncIterator[SlackBot]:
    slack_bot = SlackBot(
        runtime.service, config=SlackConfig(bot_token="xoxb-test", signing_secret=SECRET, api_url=fake.api_url)
    )
    async with slack_bot.serve_http(host="127.0.0.1", port=0) as url:
        fake.events_url = url
        yield slack_bot
        await fake.settle()


async def _refuse_writes(runtime, refuse: bool) -> None:
    # SQLite itself refuses every write, as on a full disk (the error differs, the path is the same).
    async with runtime.database.reading() as db:
        await db.execute(f"PRAGMA query_only = {'ON' if refuse else 'OFF'}")


async def _select(runtime, sql: str) -> list[tuple[Any, ...]]:
    async with runtime.database.reading() as db:
        return [tuple(row) for row in await (await db.execute(sql)).fetchall()]


async def test_a_database_that_refuses_writes_gets_no_ack_and_the_person_is_told(bot, fake, runtime):
    first = await fake.mention(channel=CHANNEL, user="U1", text="first")
    await wait_for(lambda: fake.answers_in_thread(CHANNEL, first.ts))
    answer = fake.answers_in_thread(CHANNEL, first.ts)[0]
    await wait_for(lambda: len(answer.reactions) == 2)
    await fake.settle()
    await _refuse_writes(runtime, True)

    question = await fake.mention(channel=CHANNEL, user="U1", text="are you there?")
    mention = next(
        d
        for d in fake.deliveries
        if d.envelope["event"].get("type") == "app_mention" and d.envelope["event"].get("ts") == question.ts
    )
    vote = await fake.react(user="U2", message=answer, name="+1")
    assert (mention.status, vote.status) == (500, 500)  # no ack: Slack sends both again
    # The person hears why (once per event), instead of silence.
    await wait_for(lambda: [m.text for m in fake.answers_in_thread(CHANNEL, question.ts)] == [NOT_TAKEN])
    assert await _select(runtime, "SELECT count(*) FROM pending_prompts") == [(0,)]

    # Slack's retries (same event ids) are stored and answered once the database takes writes again.
    await _refuse_writes(runtime, False)
    assert (await fake.redeliver(mention.envelope, retry_num=1)).status == 200
    assert (await fake.redeliver(vote.envelope, retry_num=1)).status == 200
    await wait_for(lambda: len(fake.answers_in_thread(CHANNEL, question.ts)) == 2)
    assert await _select(runtime, "SELECT emoji FROM votes") == [("👍",)]
    assert (await _select(runtime, "SELECT text FROM prompts ORDER BY id"))[-1] == ("are you there?",)

    async def nothing_pending() -> bool:
        return await _select(runtime, "SELECT count(*) FROM pending_prompts") == [(0,)]

    await wait_for(nothing_pending)


async def test_in_socket_mode_a_refused_write_or_a_stopping_bot_sends_no_ack(runtime, fake):
    slack_bot = SlackBot(
        runtime.service,
        config=SlackConfig(bot_token="xoxb-test", signing_secret="", api_url=fake.api_url, app_token="xapp-test"),
    )
    fake.socket_ack_timeout_s = 2.0
    async with slack_bot.serve_socket_mode():
        await wait_for(lambda: fake.sockets)
        first = await fake.mention(channel=CHANNEL, user="U1", text="first")  # acked: answered
        await wait_for(lambda: fake.answers_in_thread(CHANNEL, first.ts))
        answer = fake.answers_in_thread(CHANNEL, first.ts)[0]
        await wait_for(lambda: len(answer.reactions) == 2)
        await fake.settle()

        await _refuse_writes(runtime, True)
        with pytest.raises(NoAck) as refused_vote:
            await fake.react(user="U2", message=answer, name="+1")
        with pytest.raises(NoAck):
            await fake.mention(channel=CHANNEL, user="U1", text="are you there?")
        assert await _select(runtime, "SELECT count(*) FROM pending_prompts") == [(0,)]
        # Slack sends the vote again; once the database takes writes, it is stored and acked.
        await _refuse_writes(runtime, False)
        retried = await fake.redeliver(refused_vote.value.payload, retry_num=1)
        assert retried.status == 200
        assert await _select(runtime, "SELECT emoji FROM votes") == [("👍",)]

        # Stopping: no ack either, so Slack sends it to the next run; nothing is stored.
        await slack_bot.stop()
        with pytest.raises(NoAck):
            await fake.mention(channel=CHANNEL, user="U3", text="too late")
        await fake.settle()
    texts = [text for (text,) in await _select(runtime, "SELECT text FROM prompts ORDER BY id")]
    assert texts == ["first"]
    assert await _select(runtime, "SELECT count(*) FROM pending_prompts") == [(0,)]
