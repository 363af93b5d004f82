"""Slack scenarios: the real bolt AsyncApp and slack_sdk client against a fake Slack on 127.0.0.1.

Events arrive as signed HTTP requests at bolt's aiohttp adapter; every case checks
the rows stored in the SQLite database, not only the Web API calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml  # pyyaml, a dev dependency

from bot.adapters.slack import SlackBot, SlackConfig
from bot.adapters.slack.payloads import Where, describe, message_id, shows
from bot.app import open_runtime
from bot.events import IncomingPrompt, shown_text
from bot.settings import SettingsError, load_settings
from storage.database import Database
from tests.fakes.slack import (
    BOT_USER,
    EVENT_SCOPES,
    HISTORY_SCOPES,
    METHOD_SCOPES,
    READ_SCOPES,
    FakeSlack,
    Message,
    installed_from_manifest,
    signature_headers,
)
from tests.helpers import publish_copy, wait_for

# The runtime fixture lives on the session loop; the tests must share it.
pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "test-signing-secret"
CHANNEL = "C0001"


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET, bots=frozenset({"UOTHERBOT"})).running() as slack:
        yield slack


@pytest.fixture
def config(fake: FakeSlack) -> SlackConfig:
    return SlackConfig(bot_token="xoxb-test-token", signing_secret=SECRET, api_url=fake.api_url)


@pytest.fixture
async def bot(runtime, fake: FakeSlack, config: SlackConfig, caplog) -> AsyncIterator[SlackBot]:
    caplog.set_level(logging.INFO, logger="bot.adapters.slack")
    for name in ("bot.answers", "bot.votes", "bot.catchup"):  # the service's parts
        caplog.set_level(logging.INFO, logger=name)
    slack_bot = SlackBot(runtime.service, config=config)
    async with slack_bot.serve_http(host="127.0.0.1", port=0) as url:
        fake.events_url = url
        yield slack_bot
        await fake.settle()


async def rows(runtime, sql: str, *params: Any) -> list[tuple]:
    async with runtime.database.reading() as db:
        cursor = await db.execute(sql, params)
        return [tuple(row) for row in await cursor.fetchall()]


async def ask_in_channel(
    fake: FakeSlack, text: str = "what is a haiku?", *, user: str = "U1", thread_ts: str | None = None
) -> tuple[Message, Message]:
    """Mention the bot; wait for its answer and both pre-added reactions to settle."""
    # Counted before sending: the answer can be posted before `mention` returns.
    before = len(fake.answers_in_thread(CHANNEL, thread_ts)) if thread_ts else 0
    question = await fake.mention(channel=CHANNEL, user=user, text=text, thread_ts=thread_ts)
    thread = thread_ts or question.ts
    await wait_for(lambda: len(fake.answers_in_thread(CHANNEL, thread)) > before)
    answer = fake.answers_in_thread(CHANNEL, thread)[-1]
    await wait_for(lambda: set(answer.reactions) == {"+1", "-1"})
    await fake.settle()
    return question, answer


async def votes(runtime) -> list[tuple]:
    return await rows(
        runtime,
        "SELECT v.emoji, v.reward, r.message_key FROM votes v JOIN responses r ON r.id = v.response_id ORDER BY v.id",
    )


async def restart_until_caught_up(settings, config: SlackConfig, caplog: pytest.LogCaptureFixture) -> None:
    """A restart: a new bot process on the same database connects, catches up and stops."""
    async with open_runtime(settings) as restarted:
        again = SlackBot(restarted.service, config=dataclasses.replace(config, http_host="127.0.0.1", http_port=0))
        running = asyncio.create_task(again.serve())
        try:
            await wait_for(lambda: logged(caplog, "slack: caught up") == 1, timeout=30)
        finally:
            await again.stop()
            await asyncio.wait_for(running, 10)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


# --- asking -----------------------------------------------------------------------------
async def test_mention_gets_a_threaded_answer_with_both_thumbs(bot, fake, runtime):
    question, answer = await ask_in_channel(fake)

    assert answer.thread_ts == question.ts
    assert answer.reactions == {"+1": [BOT_USER], "-1": [BOT_USER]}
    prompts = await rows(runtime, "SELECT platform, channel, author, conversation, text FROM prompts")
    assert prompts == [("slack", CHANNEL, prompts[0][2], f"slack:{CHANNEL}:{question.ts}", "what is a haiku?")]
    assert prompts[0][2] != "U1"  # people are stored as keyed hashes only
    responses = await rows(runtime, "SELECT text, message_key, model_version FROM responses")
    assert [row[1:] for row in responses] == [(f"slack:{CHANNEL}:{answer.ts}", 0)]
    assert answer.text == (responses[0][0] or "…")  # an empty sample is shown as an ellipsis
    # The message event that accompanies every mention did not answer a second time.
    assert len(fake.calls_to("chat.postMessage")) == 1
    # Slack echoed both pre-added reactions; bolt dropped them, so no vote exists.
    assert len(fake.echoes) == 2 and all(echo.status == 200 for echo in fake.echoes)
    assert await votes(runtime) == []


async def test_direct_message_is_answered_in_its_thread(bot, fake, runtime):
    question = await fake.dm(channel="D0001", user="U1", text="tell me a story")
    await wait_for(lambda: fake.answers_in_thread("D0001", question.ts))
    answer = fake.answers_in_thread("D0001", question.ts)[0]
    await wait_for(lambda: len(answer.reactions) == 2)

    assert await rows(runtime, "SELECT channel, conversation, text FROM prompts") == [
        ("D0001", f"slack:D0001:{question.ts}", "tell me a story")
    ]
    assert await rows(runtime, "SELECT message_key FROM responses") == [(f"slack:D0001:{answer.ts}",)]


@pytest.fixture
def slow_generation(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The generator waits a full second for companions before every batch: slower than the ack.
    monkeypatch.setenv("THUMBTUNE_BATCH_WINDOW_MS", "1000")


async def test_ask_command_is_acknowledged_at_once_and_answered_later(slow_generation, bot, fake, runtime):
    started = time.monotonic()
    ack = await fake.slash(command="/ask", text="why is the sky blue?", channel=CHANNEL, user="U2")
    ack_s = time.monotonic() - started

    assert ack.status == 200 and "thinking" in ack.body
    assert ack_s < 3.0
    assert not fake.bot_messages() or all(m.thread_ts is None for m in fake.bot_messages())  # no answer yet
    await wait_for(lambda: any(m.thread_ts for m in fake.bot_messages()))
    answer_s = time.monotonic() - started
    assert answer_s > ack_s and answer_s >= 1.0

    question = next(m for m in fake.bot_messages() if m.thread_ts is None)
    assert question.text == "<@U2> asked: why is the sky blue?"
    answer = fake.answers_in_thread(CHANNEL, question.ts)[0]
    await wait_for(lambda: len(answer.reactions) == 2)
    assert await rows(runtime, "SELECT conversation, text FROM prompts") == [
        (f"slack:{CHANNEL}:{question.ts}", "why is the sky blue?")
    ]
    assert await rows(runtime, "SELECT message_key FROM responses") == [(f"slack:{CHANNEL}:{answer.ts}",)]
    logging.getLogger(__name__).info("ack %.3f s, answer %.3f s", ack_s, answer_s)


async def test_ask_where_the_bot_cannot_post_says_so_privately(bot, fake, runtime):
    fake.fail("chat.postMessage", "not_in_channel")
    ack = await fake.slash(command="/ask", text="hello?", channel="C0404", user="U2")
    assert "thinking" in ack.body
    await wait_for(lambda: fake.responses)
    assert "not_in_channel" in fake.responses[0]["text"]
    assert await rows(runtime, "SELECT id FROM prompts") == []


async def test_thread_conversation_uses_earlier_turns(bot, fake, runtime):
    question, _first = await ask_in_channel(fake, "my name is Ada")
    await ask_in_channel(fake, "what is my name?", thread_ts=question.ts)

    stored = await rows(runtime, "SELECT conversation, text, context FROM prompts ORDER BY id")
    assert [row[0] for row in stored] == [f"slack:{CHANNEL}:{question.ts}"] * 2
    first_answer = (await rows(runtime, "SELECT text FROM responses ORDER BY id"))[0][0]
    context = stored[1][2]
    assert "User: my name is Ada" in context and context.endswith("User: what is my name?\nBot:")
    assert f"Bot: {first_answer}".strip() in context


# --- rating -----------------------------------------------------------------------------
async def test_vote_change_and_removal_are_stored(bot, fake, runtime, caplog):
    _, answer = await ask_in_channel(fake)
    key = f"slack:{CHANNEL}:{answer.ts}"

    await fake.react(user="U1", message=answer, name="+1")
    await wait_for(lambda: votes(runtime))
    assert await votes(runtime) == [("👍", 1.0, key)]

    # Changing one's mind in Slack: take 👍 off, put 👎 on.
    await fake.react(user="U1", message=answer, name="+1", remove=True)
    await fake.react(user="U1", message=answer, name="-1")
    await wait_for(lambda: logged(caplog, "-> recorded") == 2)
    await wait_for(lambda: logged(caplog, "-> retracted") == 1)
    assert await votes(runtime) == [("👎", -1.0, key)]

    await fake.react(user="U1", message=answer, name="-1", remove=True)
    await wait_for(lambda: logged(caplog, "-> retracted") == 2)
    assert await votes(runtime) == []


async def test_skin_tones_and_long_names_all_count(bot, fake, runtime):
    _, answer = await ask_in_channel(fake)

    await fake.react(user="U1", message=answer, name="+1::skin-tone-2")
    await fake.react(user="U2", message=answer, name="thumbsdown::skin-tone-6")
    await fake.react(user="U3", message=answer, name="thumbsup")
    await wait_for(lambda: _count(runtime, 3))
    stored = sorted(await rows(runtime, "SELECT emoji, reward FROM votes"))
    assert stored == [("👍", 1.0), ("👍", 1.0), ("👎", -1.0)]  # one name per emoji

    await fake.react(user="U1", message=answer, name="+1::skin-tone-2", remove=True)
    await wait_for(lambda: _count(runtime, 2))
    assert sorted(await rows(runtime, "SELECT emoji FROM votes")) == [("👍",), ("👎",)]


async def test_one_persons_plus_one_and_thumbsup_are_one_vote(bot, fake, runtime, caplog):
    _, answer = await ask_in_channel(fake)
    await fake.react(user="U1", message=answer, name="+1")
    await fake.react(user="U1", message=answer, name="thumbsup::skin-tone-3")
    await wait_for(lambda: logged(caplog, "-> already recorded") == 1)
    assert await votes(runtime) == [("👍", 1.0, f"slack:{CHANNEL}:{answer.ts}")]
    # Taking either name back takes the one vote back, though the other is still shown
    # (a live removal is taken at its word; a restart's catch-up, which sees what is shown,
    # records it again).
    await fake.react(user="U1", message=answer, name="thumbsup::skin-tone-3", remove=True)
    await wait_for(lambda: _count(runtime, 0))
    await fake.react(user="U1", message=answer, name="+1", remove=True)
    await wait_for(lambda: logged(caplog, "-> nothing to retract") == 1)


async def _count(runtime, expected: int) -> bool:
    return (await rows(runtime, "SELECT count(*) FROM votes"))[0][0] == expected


async def test_reactions_that_are_not_votes_are_ignored(bot, fake, runtime, caplog):
    question, answer = await ask_in_channel(fake)

    # Another bot: acknowledged before it is looked up (users.info), then its vote taken back.
    await fake.react(user="UOTHERBOT", message=answer, name="+1")
    await wait_for(lambda: logged(caplog, "was a bot's") == 1)
    await fake.react(user="UOTHERBOT", message=answer, name="-1")  # known now: ignored at once
    await fake.react(user="U1", message=question, name="+1")  # a person's message
    await fake.react(user="U1", message=answer, name="tada")  # not a rating emoji
    await wait_for(lambda: logged(caplog, "ignored reaction") == 3)

    assert logged(caplog, "by a bot") == 1
    assert logged(caplog, "not on an answer of mine") == 1
    assert logged(caplog, "not a rating emoji") == 1
    assert await votes(runtime) == []
    # Self-reactions never reached our listener: bolt's self-event filter dropped them.
    assert logged(caplog, "the bot's own") == 0


# --- exactly once -----------------------------------------------------------------------
async def test_retried_events_never_double_answers_or_votes(bot, fake, runtime, settings, config, caplog):
    question = await fake.mention(channel=CHANNEL, user="U1", text="hello there")
    await wait_for(lambda: fake.answers_in_thread(CHANNEL, question.ts))
    answer = fake.answers_in_thread(CHANNEL, question.ts)[0]
    await wait_for(lambda: len(answer.reactions) == 2)

    # Slack resends the very same app_mention envelope with X-Slack-Retry-Num.
    first = fake.envelope(
        {
            "type": "app_mention",
            "channel": CHANNEL,
            "user": "U1",
            "text": f"<@{BOT_USER}> hello again",
            "ts": "1800000000.000001",
        }
    )
    assert (await fake.redeliver(first)).status == 200
    await wait_for(lambda: len(fake.calls_to("chat.postMessage")) == 2)
    for retry in (1, 2):
        assert (await fake.redeliver(first, retry_num=retry)).status == 200

    vote = await fake.react(user="U1", message=answer, name="+1")
    await fake.redeliver(vote.envelope, retry_num=1)
    await wait_for(lambda: logged(caplog, "-> duplicate event") >= 1)
    await wait_for(lambda: logged(caplog, "ignoring retried prompt") == 2)
    await fake.settle()

    assert len(fake.calls_to("chat.postMessage")) == 2
    assert len(await rows(runtime, "SELECT id FROM prompts")) == 2
    assert await votes(runtime) == [("👍", 1.0, f"slack:{CHANNEL}:{answer.ts}")]
    claimed = {row[0] for row in await rows(runtime, "SELECT event_id FROM processed_events")}
    # A prompt is claimed by its message (what a restart's look for missed prompts finds), a vote by its event.
    assert {f"message:{CHANNEL}:1800000000.000001", vote.envelope["event_id"]} <= claimed

    # A restart: a new process opens the same database; the ids are still known there.
    async with open_runtime(settings) as restarted:
        again = SlackBot(restarted.service, config=config)
        async with again.serve_http(host="127.0.0.1", port=0) as url:
            fake.events_url = url
            await fake.redeliver(first, retry_num=3)
            await fake.redeliver(vote.envelope, retry_num=3)
            await wait_for(lambda: logged(caplog, "-> duplicate event") >= 2)
            await wait_for(lambda: logged(caplog, "ignoring retried prompt") == 3)
    assert len(fake.calls_to("chat.postMessage")) == 2
    assert len(await rows(runtime, "SELECT id FROM prompts")) == 2
    assert len(await votes(runtime)) == 1


@pytest.mark.parametrize("tamper", ["bad signature", "stale timestamp"])
async def test_unsigned_or_stale_requests_are_rejected_without_any_call(bot, fake, runtime, tamper):
    event = {
        "type": "app_mention",
        "channel": CHANNEL,
        "user": "U1",
        "text": f"<@{BOT_USER}> hi",
        "ts": "1800000000.000002",
    }
    if tamper == "bad signature":
        delivery = await fake.redeliver(fake.envelope(event), secret="not-the-secret")
    else:
        delivery = await fake.redeliver(fake.envelope(event), timestamp=int(time.time()) - 10 * 60)

    assert delivery.status == 401
    assert fake.calls == []
    assert await rows(runtime, "SELECT id FROM prompts") == []
    assert await rows(runtime, "SELECT event_id FROM processed_events") == []


# --- what the log keeps of people: nothing at INFO and above ---------------------------
# A user id and a prompt that must never reach the log; the longest line allowed.
PERSON = "UPERSON42"
PROMPT_TEXT = "my very private question about my health"
LONGEST_LOG_LINE = 1_000


@pytest.fixture
async def logged_bot(runtime, fake: FakeSlack, config: SlackConfig, caplog) -> AsyncIterator[SlackBot]:
    """A bot built while every logger records DEBUG (bolt copies the root level when it is built)."""
    caplog.set_level(logging.DEBUG)
    slack_bot = SlackBot(runtime.service, config=config)
    async with slack_bot.serve_http(host="127.0.0.1", port=0) as url:
        fake.events_url = url
        yield slack_bot
        await fake.settle()


def leaks(caplog: pytest.LogCaptureFixture, *secrets: str) -> list[str]:
    """Records at INFO and above that show one of ``secrets`` or are longer than allowed."""
    return [
        f"{record.name} {record.levelname}: {record.getMessage()[:200]}"
        for record in caplog.records
        if record.levelno >= logging.INFO
        and (len(record.getMessage()) > LONGEST_LOG_LINE or any(s in record.getMessage() for s in secrets))
    ]


def _big_envelope(fake: FakeSlack) -> str:
    """A ~900 KB event envelope full of a person's id and words."""
    event = {
        "type": "app_mention",
        "channel": CHANNEL,
        "user": PERSON,
        "text": f"<@{BOT_USER}> {PROMPT_TEXT} " + "x" * 900_000,
        "ts": "1800000000.000003",
    }
    return json.dumps(fake.envelope(event))


@pytest.mark.parametrize("tamper", ["no signature", "wrong signature", "stale timestamp", "timestamp not a number"])
async def test_refused_requests_are_logged_in_one_short_line_without_the_body(
    logged_bot, fake, runtime, caplog, tamper
):
    body = _big_envelope(fake)
    headers = {"Content-Type": "application/json"}
    if tamper == "wrong signature":
        headers |= signature_headers(body, secret="not-the-secret")
    elif tamper == "stale timestamp":
        headers |= signature_headers(body, secret=SECRET, timestamp=int(time.time()) - 10 * 60)
    elif tamper == "timestamp not a number":
        headers |= {**signature_headers(body, secret=SECRET), "X-Slack-Request-Timestamp": "soon"}
    assert fake.events_url is not None
    async with aiohttp.ClientSession() as http, http.post(fake.events_url, data=body, headers=headers) as response:
        assert response.status == 401

    assert leaks(caplog, PERSON, PROMPT_TEXT) == []
    refused = [record.getMessage() for record in caplog.records if "refused a request" in record.getMessage()]
    assert len(refused) == 1 and f"{len(body.encode())} bytes" in refused[0], refused
    assert not any(PERSON in record.getMessage() for record in caplog.records)  # not even at DEBUG
    assert fake.calls == []
    assert await rows(runtime, "SELECT id FROM prompts") == []


MALFORMED_REACTIONS = {
    "item is a string": {"item": "a string"},
    "item is a list": {"item": [CHANNEL, "1700000001.000001"]},
    "item is missing": {"item": None},
    "item without a channel": {"item": {"type": "message"}},
    "user is a list": {"user": [PERSON]},
    "reaction is an object": {"reaction": {"name": "+1", "by": PERSON}},
    "a 100,000-character emoji": {"reaction": "+1" + "x" * 100_000},
}


async def test_signed_malformed_reactions_are_logged_without_the_person_and_crash_nothing(
    logged_bot, fake, runtime, caplog
):
    _, answer = await ask_in_channel(fake)
    sent = []
    for number, change in enumerate(MALFORMED_REACTIONS.values()):
        event = {**fake._reaction_event("reaction_added", answer, PERSON, "+1"), **change}
        event = {name: value for name, value in event.items() if value is not None}
        delivery = await fake.deliver(event, event_id=f"EvMALFORMED{number}")
        assert delivery.status == 200, delivery
        sent.append(f"EvMALFORMED{number}")
    # Envelopes no Slack request has: refused with 400, and described without the person.
    for event in ([{"type": "reaction_added", "user": PERSON}], f"reaction_added by {PERSON}"):
        envelope = {**fake.envelope({}), "event": event}
        assert (await fake.redeliver(envelope)).status == 400

    await wait_for(lambda: set(sent) <= set(logged_bot.events_started) and not logged_bot.busy)
    assert leaks(caplog, PERSON) == []
    # Each one is ignored, or (an answer without a channel) found to be no answer of mine.
    assert logged(caplog, "ignored reaction") + logged(caplog, "-> unknown response") == len(MALFORMED_REACTIONS)
    assert logged(caplog, "(100002 chars)") == 1  # the long emoji, cut
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a handler or the error path failed"
    assert await votes(runtime) == []
    # The bot still answers and counts.
    await fake.react(user=PERSON, message=answer, name="+1")
    await wait_for(lambda: votes(runtime))


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "a string",
        {"event": [PERSON]},
        {"event": f"by {PERSON}"},
        {"event": {"type": "reaction_added", "user": PERSON, "item": f"from {PERSON}"}},
        {"event": {"type": "reaction_added", "user": PERSON, "item": [PERSON]}, "event_id": ["Ev1"]},
        {"event": {"type": {"user": PERSON}, "channel": {"id": PERSON}}},
        {"event": {"type": "message", "channel": "C" * 100_000}},
        {"command": {"user": PERSON}, "channel_id": 7},
        {"type": [PERSON]},
    ],
)
async def test_the_description_of_a_failed_request_never_fails_or_names_the_person(body):
    described = describe(body)
    assert PERSON not in described and len(described) < 300


async def test_socket_mode_logs_malformed_events_without_the_person(runtime, fake, config, caplog):
    caplog.set_level(logging.DEBUG)
    slack_bot = SlackBot(runtime.service, config=dataclasses.replace(config, app_token="xapp-test-token"))
    async with slack_bot.serve_socket_mode():
        await wait_for(lambda: fake.sockets)
        _, answer = await ask_in_channel(fake)
        sent = []
        for number, change in enumerate(MALFORMED_REACTIONS.values()):
            event = {**fake._reaction_event("reaction_added", answer, PERSON, "+1"), **change}
            event = {name: value for name, value in event.items() if value is not None}
            await fake.deliver(event, event_id=f"EvSOCKET{number}")
            sent.append(f"EvSOCKET{number}")
        # An envelope whose event is a list: bolt fails on it (no ack, so Slack would retry);
        # the failure is logged by its event id.
        envelope = {**fake.envelope({}, event_id="EvSOCKETLIST"), "event": [PERSON]}
        await fake.sockets[-1].send_json({"envelope_id": "e-list", "type": "events_api", "payload": envelope})
        await wait_for(lambda: logged(caplog, "handler failed for event EvSOCKETLIST that is a list") == 1)
        await wait_for(lambda: set(sent) <= set(slack_bot.events_started) and not slack_bot.busy)
        await fake.settle()
    assert leaks(caplog, PERSON) == []
    assert await votes(runtime) == []


async def test_rate_limited_post_is_retried_after_retry_after(bot, fake, runtime):
    fake.rate_limit("chat.postMessage", times=1, retry_after=0)
    _question, answer = await ask_in_channel(fake)

    posts = fake.calls_to("chat.postMessage")
    assert len(posts) == 2 and posts[0].args == posts[1].args  # the same call, tried again
    assert await rows(runtime, "SELECT message_key FROM responses") == [(f"slack:{CHANNEL}:{answer.ts}",)]


async def test_other_api_errors_are_logged_and_the_bot_goes_on(bot, fake, runtime, caplog):
    fake.fail("reactions.add", "missing_scope", times=2)
    question = await fake.mention(channel=CHANNEL, user="U1", text="first")
    await wait_for(lambda: logged(caplog, "missing_scope") == 2)
    answer = fake.answers_in_thread(CHANNEL, question.ts)[0]
    assert answer.reactions == {}
    # The answer is stored and rateable all the same, and the next question works.
    assert await rows(runtime, "SELECT message_key FROM responses") == [(f"slack:{CHANNEL}:{answer.ts}",)]
    await ask_in_channel(fake, "second")
    assert len(await rows(runtime, "SELECT id FROM responses")) == 2


async def test_failing_reaction_pre_adds_never_stop_an_answer_or_a_vote(bot, fake, runtime, caplog):
    # Pre-added reactions are best-effort: the connection of the 👍 drops (twice: the client
    # retries a dropped connection once) and Slack answers the 👎 with a 500 error page.
    fake.disconnect("reactions.add", times=2)
    fake.fail_status("reactions.add", 500)
    question = await fake.mention(channel=CHANNEL, user="U1", text="answer me anyway")
    await wait_for(lambda: len(fake.calls_to("reactions.add")) == 3)  # 👎 still tried after 👍 failed
    await wait_for(lambda: logged(caplog, "going on without it") == 2)
    [answer] = fake.answers_in_thread(CHANNEL, question.ts)
    assert answer.reactions == {}
    assert await rows(runtime, "SELECT message_key, model_version FROM responses") == [
        (f"slack:{CHANNEL}:{answer.ts}", 0)
    ]
    assert logged(caplog, "pre-adding :+1:") == 1 and logged(caplog, "pre-adding :-1:") == 1
    assert logged(caplog, "(HTTP 500)") == 1
    assert logged(caplog, "the bot goes on") == 0  # no listener failed

    await fake.react(user="U2", message=answer, name="+1")  # votes are not cosmetic
    await wait_for(lambda: votes(runtime))
    assert await votes(runtime) == [("👍", 1.0, f"slack:{CHANNEL}:{answer.ts}")]
    assert "xoxb-test-token" not in caplog.text


# --- corrections ------------------------------------------------------------------------
async def test_a_better_reply_in_the_thread_is_stored_as_a_correction(bot, fake, runtime, caplog):
    question, answer = await ask_in_channel(fake, "what is a haiku?")

    await fake.reply(channel=CHANNEL, user="U3", text="Better: a short poem of 5-7-5 syllables", thread_ts=question.ts)
    await fake.reply(channel=CHANNEL, user="U3", text="thanks, nice try", thread_ts=question.ts)  # not one
    await wait_for(lambda: logged(caplog, "correction of") == 1)

    stored = await rows(
        runtime, "SELECT c.text, c.author, r.message_key FROM corrections c JOIN responses r ON r.id = c.response_id"
    )
    assert stored == [("a short poem of 5-7-5 syllables", stored[0][1], f"slack:{CHANNEL}:{answer.ts}")]
    assert stored[0][1] != "U3"
    assert len(fake.calls_to("chat.postMessage")) == 1  # a correction is not a new question


async def test_better_outside_a_thread_gets_a_hint_not_an_answer(bot, fake, runtime):
    message = await fake.dm(channel="D0002", user="U1", text="better: something else")
    await wait_for(lambda: fake.answers_in_thread("D0002", message.ts))
    hint = fake.answers_in_thread("D0002", message.ts)[0]
    assert "reply in the thread of my answer" in hint.text and hint.reactions == {}
    assert await rows(runtime, "SELECT id FROM prompts") == []
    assert await rows(runtime, "SELECT id FROM corrections") == []


# --- settings ---------------------------------------------------------------------------
async def test_config_from_settings_names_what_is_missing(settings_env, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-value")
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET"):
        SlackConfig.from_settings(load_settings())

    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shh")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")
    config = SlackConfig.from_settings(load_settings())
    assert not config.socket_mode and config.api_url == "http://127.0.0.1:9/api/"
    assert config.http_port == 3000 and config.correction_prefix == "better:"
    assert "xoxb-secret-value" not in repr(config) and "shh" not in repr(config)

    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-abc")
    assert SlackConfig.from_settings(load_settings()).socket_mode
    assert dataclasses.replace(config, app_token=None).socket_mode is False


# --- Socket Mode ------------------------------------------------------------------------
@pytest.fixture
async def socket_bot(runtime, fake: FakeSlack, config: SlackConfig, caplog) -> AsyncIterator[SlackBot]:
    caplog.set_level(logging.INFO, logger="bot.adapters.slack")
    slack_bot = SlackBot(runtime.service, config=dataclasses.replace(config, app_token="xapp-test-token"))
    async with slack_bot.serve_socket_mode():
        await wait_for(lambda: fake.sockets)
        yield slack_bot
        await fake.settle()


async def test_socket_mode_answers_and_counts_votes(socket_bot, fake, runtime):
    assert fake.calls_to("apps.connections.open")
    question, answer = await ask_in_channel(fake, "hello over a socket")
    assert answer.thread_ts == question.ts
    assert len(fake.echoes) == 2 and await votes(runtime) == []  # own reactions ignored here too

    vote = await fake.react(user="U1", message=answer, name="-1::skin-tone-3")
    await fake.redeliver(vote.envelope, retry_num=1)  # Socket Mode retries too
    await wait_for(lambda: votes(runtime))
    await fake.settle()
    assert await votes(runtime) == [("👎", -1.0, f"slack:{CHANNEL}:{answer.ts}")]
    assert await rows(runtime, "SELECT conversation FROM prompts") == [(f"slack:{CHANNEL}:{question.ts}",)]


async def test_socket_mode_ask_is_acknowledged_with_a_note(socket_bot, fake, runtime):
    ack = await fake.slash(command="/ask", text="what is a haiku?", channel=CHANNEL, user="U2")
    assert "thinking" in ack.body and ack.elapsed_s < 3.0
    await wait_for(lambda: any(m.thread_ts for m in fake.bot_messages()))
    await wait_for(lambda: rows(runtime, "SELECT message_key FROM responses WHERE message_key IS NOT NULL"))


async def test_start_up_names_a_refused_token(runtime, fake, config):
    slack_bot = SlackBot(runtime.service, config=dataclasses.replace(config, app_token="xapp-revoked"))
    fake.fail("apps.connections.open", "invalid_auth")
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN: Slack refused it \\(invalid_auth\\)"):
        await slack_bot.serve()
    fake.fail("auth.test", "invalid_auth")
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN"):
        await slack_bot.serve()


# --- the app manifest -------------------------------------------------------------------
async def test_manifest_asks_for_what_the_adapter_listens_to():
    from bot.adapters import slack

    manifest = yaml.safe_load((Path(slack.__file__).parent / "manifest.yml").read_text())
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.im", "message.channels", "reaction_added", "reaction_removed"} <= events
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [slack.ASK_COMMAND]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "reactions:write", "reactions:read", "commands", "users:read", "files:write"} <= scopes
    # Prompts missed while down: which conversations the bot is in, and their history.
    assert {"channels:read", "groups:read", "im:read", "channels:history", "groups:history", "im:history"} <= scopes
    assert manifest["settings"]["socket_mode_enabled"] is True


# --- the command line -------------------------------------------------------------------
async def test_run_without_a_bot_token_names_the_setting(settings_env, capsys):
    from bot.cli import main

    code = await asyncio.to_thread(main, ["run", "--adapter", "slack"])
    assert code == 2
    assert "SLACK_BOT_TOKEN" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_thumbtune_run_serves_slack_end_to_end(settings_env, fake, tmp_path):
    """`python -m bot run` with SLACK_BOT_TOKEN set: the real process, its database, Ctrl-C."""
    port = _free_port()
    token = "xoxb-never-print-me"
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "THUMBTUNE_HTTP_HOST": "127.0.0.1",
        "THUMBTUNE_HTTP_PORT": str(port),
        "THUMBTUNE_LOG_LEVEL": "DEBUG",
    }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env=env,
            stdout=log_file,
            stderr=log_file,
            cwd=Path(__file__).resolve().parents[1],
        )
        try:
            await wait_for(lambda: "listening for events" in log_path.read_text(errors="replace"), timeout=120)
            fake.events_url = f"http://127.0.0.1:{port}/slack/events"
            _question, answer = await ask_in_channel(fake, "hello from the command line")
            await fake.react(user="U1", message=answer, name="+1")
            await wait_for(lambda: "-> recorded" in log_path.read_text(errors="replace"))
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), 30)
    output = log_path.read_text(errors="replace")
    assert code in (0, 130), output[-2000:]
    assert token not in output and SECRET not in output

    database = await Database.open(Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.db")
    async with database, database.reading() as db:
        cursor = await db.execute("SELECT r.message_key, v.emoji FROM responses r JOIN votes v ON v.response_id = r.id")
        assert [tuple(row) for row in await cursor.fetchall()] == [(f"slack:{CHANNEL}:{answer.ts}", "👍")]


# --- catching up after downtime ---------------------------------------------------------
def _reads(fake: FakeSlack) -> list[str]:
    """The timestamps of the messages whose reactions the bot read, in order."""
    return [call.args["timestamp"] for call in fake.calls_to("reactions.get")]


async def test_reactions_changed_while_down_are_caught_up_after_a_restart(bot, fake, runtime, settings, config, caplog):
    _, first = await ask_in_channel(fake, "first question")
    _, second = await ask_in_channel(fake, "second question")
    await fake.react(user="U1", message=first, name="+1")
    await fake.react(user="U2", message=first, name="-1")
    await wait_for(lambda: _count(runtime, 2))

    # The bot is down: people change their reactions and no event reaches it.
    fake.react_while_away(user="U1", message=first, name="+1", remove=True)  # retracted
    fake.react_while_away(user="U3", message=first, name="+1::skin-tone-2")  # added
    fake.react_while_away(user="U4", message=second, name="-1")  # added
    fake.react_while_away(user="UOTHERBOT", message=second, name="+1")  # a bot: ignored
    fake.react_while_away(user="U4", message=second, name="tada")  # not a rating
    fake.rate_limit("reactions.get", times=1, retry_after=0)  # Slack says slow down once
    calls_before = len(fake.calls)

    # A restart: a new process on the same database connects and catches up.
    await restart_until_caught_up(settings, config, caplog)

    assert (
        logged(caplog, "caught up on 2 answer(s) from the last 24 h: 2 vote(s) added, 1 retracted, 0 unreadable") == 1
    )
    # Newest first, the rate-limited read tried again; the bot's own thumbs cost no users.info.
    assert _reads(fake) == [second.ts, second.ts, first.ts]
    assert all(call.args["channel"] == CHANNEL for call in fake.calls_to("reactions.get"))
    looked_up = {call.args["user"] for call in fake.calls[calls_before:] if call.method == "users.info"}
    assert BOT_USER not in looked_up and "UOTHERBOT" in looked_up
    assert sorted(await votes(runtime)) == sorted(
        [
            ("👎", -1.0, f"slack:{CHANNEL}:{first.ts}"),  # U2, unchanged
            ("👍", 1.0, f"slack:{CHANNEL}:{first.ts}"),  # U3, added while down
            ("👎", -1.0, f"slack:{CHANNEL}:{second.ts}"),  # U4, added while down
        ]
    )
    voters = await rows(runtime, "SELECT voter FROM votes")
    assert all(voter not in ("U2", "U3", "U4") for (voter,) in voters)  # keyed hashes only


async def test_forget_me_sticks_through_a_restarts_catch_up(bot, fake, runtime, settings, config, caplog):
    _, first = await ask_in_channel(fake, "first question")
    _, second = await ask_in_channel(fake, "second question")
    for message in (first, second):
        await fake.react(user="U5", message=message, name="+1")
    await fake.react(user="U2", message=first, name="-1")
    await wait_for(lambda: _count(runtime, 3))
    forget = await fake.mention(channel=CHANNEL, user="U5", text="forget me")
    await wait_for(lambda: _count(runtime, 1))
    await wait_for(lambda: any("2 vote(s)" in m.text for m in fake.answers_in_thread(CHANNEL, forget.ts)))

    # A restart: Slack still shows U5's two 👍; the catch-up must not count them again.
    await restart_until_caught_up(settings, config, caplog)

    assert logged(caplog, "caught up on 2 answer(s) from the last 24 h: 0 vote(s) added, 0 retracted") == 1
    assert await votes(runtime) == [("👎", -1.0, f"slack:{CHANNEL}:{first.ts}")]  # U2's only


async def _restart_and_answer_missed(settings, config, fake: FakeSlack, caplog, *, times: int = 1) -> None:
    """A new process on the same database starts, looks for prompts missed while down, answers them, stops."""
    async with open_runtime(settings) as restarted:
        again = SlackBot(restarted.service, config=dataclasses.replace(config, http_host="127.0.0.1", http_port=0))
        running = asyncio.create_task(again.serve())
        try:
            await wait_for(lambda: logged(caplog, "missed while down") == times, timeout=30)
        finally:
            await again.stop()  # the answers in flight are finished first
            await asyncio.wait_for(running, 30)
    await fake.settle()


async def test_prompts_sent_while_down_are_answered_once_after_a_restart(bot, fake, runtime, settings, config, caplog):
    answered, _ = await ask_in_channel(fake, "answered before the restart")
    # A thread started 5 minutes ago, answered live (its first turn is inside the bound).
    in_thread = fake.post_while_away(channel=CHANNEL, user="U1", text=f"<@{BOT_USER}> first turn", ago_s=300)
    await fake.deliver(
        {"type": "app_mention", "channel": CHANNEL, "user": "U1", "text": in_thread.text, "ts": in_thread.ts}
    )
    await wait_for(lambda: len(fake.answers_in_thread(CHANNEL, in_thread.ts)) == 1)
    await fake.settle()

    # The bot is down: people write; no event reaches it.
    old = fake.post_while_away(channel=CHANNEL, user="U1", text=f"<@{BOT_USER}> too old", ago_s=25 * 3600)
    mention = fake.post_while_away(channel=CHANNEL, user="U2", text=f"<@{BOT_USER}> what is a haiku?")
    turn = fake.post_while_away(channel=CHANNEL, user="U1", text=f"<@{BOT_USER}> second turn", thread_ts=in_thread.ts)
    dm = fake.post_while_away(channel="D0001", user="U3", text="hello from a DM")
    by_bot = fake.post_while_away(channel=CHANNEL, user="UOTHERBOT", text=f"<@{BOT_USER}> I am a bot")
    chatter = fake.post_while_away(channel=CHANNEL, user="U4", text="not for the bot")
    posts_before = len(fake.calls_to("chat.postMessage"))

    await _restart_and_answer_missed(settings, config, fake, caplog)

    assert logged(caplog, "found 3 prompt(s) missed while down in the last 24 h") == 1
    await wait_for(lambda: len(fake.calls_to("chat.postMessage")) == posts_before + 3)
    assert len(fake.answers_in_thread(CHANNEL, mention.ts)) == 1
    assert len(fake.answers_in_thread(CHANNEL, in_thread.ts)) == 2  # the second turn, in its thread
    assert len(fake.answers_in_thread("D0001", dm.ts)) == 1
    for left in (old, by_bot, chatter, answered):
        assert fake.answers_in_thread(CHANNEL, left.ts) == (
            [] if left is not answered else fake.answers_in_thread(CHANNEL, answered.ts)
        )
    assert len(fake.answers_in_thread(CHANNEL, answered.ts)) == 1  # answered live: not again
    texts = {row[0] for row in await rows(runtime, "SELECT text FROM prompts")}
    assert {"what is a haiku?", "second turn", "hello from a DM"} <= texts
    assert not texts & {"too old", "I am a bot", "not for the bot"}
    claimed = {row[0] for row in await rows(runtime, "SELECT event_id FROM processed_events")}
    assert {f"message:{CHANNEL}:{mention.ts}", f"message:{CHANNEL}:{turn.ts}", f"message:D0001:{dm.ts}"} <= claimed
    assert await rows(runtime, "SELECT id FROM pending_prompts") == []

    # A second restart answers none of them again.
    await _restart_and_answer_missed(settings, config, fake, caplog, times=2)
    assert logged(caplog, "found 0 prompt(s) missed while down") == 1
    assert len(fake.calls_to("chat.postMessage")) == posts_before + 3


async def test_missed_prompts_are_bounded_and_a_live_event_for_one_answers_it_once(
    bot, fake, runtime, settings, config, caplog
):
    first = fake.post_while_away(channel=CHANNEL, user="U1", text=f"<@{BOT_USER}> first", ago_s=120)
    second = fake.post_while_away(channel=CHANNEL, user="U2", text=f"<@{BOT_USER}> second", ago_s=90)
    third = fake.post_while_away(channel=CHANNEL, user="U3", text=f"<@{BOT_USER}> third", ago_s=60)
    # Slack delivers the event of the newest one late, after the bot came back: answered once.
    await fake.deliver({"type": "app_mention", "channel": CHANNEL, "user": "U3", "text": third.text, "ts": third.ts})
    await wait_for(lambda: len(fake.answers_in_thread(CHANNEL, third.ts)) == 1)
    await fake.settle()

    # At most reconcile_max_messages prompts are taken, the newest; the older one waits.
    capped = dataclasses.replace(config, reconcile_max_messages=1)
    await _restart_and_answer_missed(settings, capped, fake, caplog)
    assert logged(caplog, "found 1 prompt(s) missed while down") == 1
    assert len(fake.answers_in_thread(CHANNEL, second.ts)) == 1
    assert fake.answers_in_thread(CHANNEL, first.ts) == []

    await _restart_and_answer_missed(settings, config, fake, caplog, times=2)
    assert logged(caplog, "found 1 prompt(s) missed while down") == 2
    assert [len(fake.answers_in_thread(CHANNEL, m.ts)) for m in (first, second, third)] == [1, 1, 1]
    # reconcile_hours = 0 turns it off.
    off = SlackBot(runtime.service, config=dataclasses.replace(config, reconcile_hours=0))
    assert await off.answer_missed() == 0


async def test_catch_up_reads_only_recent_answers_newest_first(bot, fake, runtime, config):
    answers = [(await ask_in_channel(fake, f"question {n}"))[1] for n in range(3)]
    keys = [f"slack:{CHANNEL}:{answer.ts}" for answer in answers]
    # The oldest answer was posted two days ago, outside the 24 h window.
    async with runtime.database.transaction() as db:
        await db.execute("UPDATE responses SET created_at = created_at - 2 * 86400 WHERE message_key = ?", (keys[0],))
    for answer in answers:
        fake.react_while_away(user="U1", message=answer, name="+1")

    caught = await bot.catch_up()
    assert (caught.checked, caught.added, caught.retracted, caught.failed) == (2, 2, 0, 0)
    assert _reads(fake) == [answers[2].ts, answers[1].ts]
    assert sorted(row[2] for row in await votes(runtime)) == sorted(keys[1:])

    # At most reconcile_max_messages answers are read, the newest.
    for answer in answers:
        fake.react_while_away(user="U2", message=answer, name="-1")
    capped = SlackBot(runtime.service, config=dataclasses.replace(config, reconcile_max_messages=1))
    caught = await capped.catch_up()
    assert (caught.checked, caught.added) == (1, 1)
    assert _reads(fake)[2:] == [answers[2].ts]
    assert ("👎", -1.0, keys[2]) in await votes(runtime) and len(await votes(runtime)) == 3

    # reconcile_hours = 0 turns catching up off.
    off = SlackBot(runtime.service, config=dataclasses.replace(config, reconcile_hours=0))
    assert await off.catch_up() == type(caught)()
    assert len(_reads(fake)) == 3


async def test_catch_up_keeps_votes_slack_did_not_list_and_goes_on_after_an_error(bot, fake, runtime, caplog):
    _, first = await ask_in_channel(fake, "first question")
    _, second = await ask_in_channel(fake, "second question")
    for user in ("U1", "U2", "U3"):
        await fake.react(user=user, message=first, name="+1")
    await wait_for(lambda: _count(runtime, 3))
    fake.react_while_away(user="U4", message=first, name="-1")
    # On busy messages Slack lists only some of the people (with the full count).
    fake.reaction_users_shown = 2
    fake.fail("reactions.get", "message_not_found")  # the first read (the newest answer) fails

    caught = await bot.catch_up()

    assert (caught.checked, caught.added, caught.retracted, caught.failed) == (1, 1, 0, 1)
    assert _reads(fake) == [second.ts, first.ts]
    assert logged(caplog, "message_not_found") == 1
    # Only U1 of the three thumbs up was listed (after the bot's own): none is retracted.
    assert sorted(await votes(runtime)) == sorted(
        [("👍", 1.0, f"slack:{CHANNEL}:{first.ts}")] * 3 + [("👎", -1.0, f"slack:{CHANNEL}:{first.ts}")]
    )


# --- the stats chart --------------------------------------------------------------------
async def test_stats_posts_the_table_and_the_chart_in_the_thread(bot, fake, runtime, settings):
    _, answer = await ask_in_channel(fake, "hello")
    await fake.react(user="U1", message=answer, name="+1")
    await wait_for(lambda: _count(runtime, 1))

    question = await fake.mention(channel=CHANNEL, user="U2", text="stats")
    await wait_for(lambda: any(message.files for message in fake.answers_in_thread(CHANNEL, question.ts)))
    table, chart = fake.answers_in_thread(CHANNEL, question.ts)

    assert "approval" in table.text and table.reactions == {}  # a report, not a rateable answer
    assert table.text.startswith("```\n") and table.text.endswith("\n```")  # monospace, so columns line up
    [upload] = chart.files
    saved = list((settings.data_dir / "charts").glob("*.png"))
    assert len(saved) == 1 and upload.filename == saved[0].name
    assert upload.data[:8] == b"\x89PNG\r\n\x1a\n" and upload.data == saved[0].read_bytes()
    assert (upload.channel, upload.thread_ts) == (CHANNEL, question.ts)
    assert len(fake.calls_to("files.getUploadURLExternal")) == 1
    assert len(fake.calls_to("files.completeUploadExternal")) == 1
    # A command is not a prompt: nothing new is stored.
    assert len(await rows(runtime, "SELECT id FROM prompts")) == 1
    assert len(await rows(runtime, "SELECT id FROM responses")) == 1


async def test_stats_without_upload_permission_still_posts_the_table(bot, fake, runtime, caplog):
    fake.fail("files.getUploadURLExternal", "missing_scope")
    question = await fake.dm(channel="D0003", user="U1", text="stats")
    await wait_for(lambda: logged(caplog, "could not upload") == 1)
    [table] = fake.answers_in_thread("D0003", question.ts)
    assert table.text == "```\nNo answers yet.\n```" and table.files == []
    assert logged(caplog, "missing_scope") == 1
    assert fake.calls_to("files.completeUploadExternal") == []


async def test_a_live_reaction_during_catch_up_is_not_undone(bot, fake, runtime, caplog):
    _, answer = await ask_in_channel(fake)
    gate = fake.hold("reactions.get")
    catching_up = asyncio.create_task(bot.catch_up())
    await wait_for(lambda: fake.calls_to("reactions.get"))  # Slack has read the reactions (without U5's)

    caplog.set_level(logging.DEBUG, logger="bot.votes")
    # Arrives while the answer is read; acknowledged only once stored, so after the read.
    vote = asyncio.create_task(fake.react(user="U5", message=answer, name="+1"))
    await wait_for(lambda: logged(caplog, "waits for the catch-up") == 1)
    assert not vote.done()
    gate.set()
    caught = await asyncio.wait_for(catching_up, 10)
    assert (await asyncio.wait_for(vote, 10)).status == 200
    assert logged(caplog, "-> recorded") == 1

    assert (caught.checked, caught.added, caught.retracted) == (1, 0, 0)
    assert await votes(runtime) == [("👍", 1.0, f"slack:{CHANNEL}:{answer.ts}")]


# --- comparisons ------------------------------------------------------------------------
async def test_a_comparison_is_posted_with_its_four_reactions_and_one_two_handshake_are_verdicts(
    bot, fake, runtime, caplog
):
    question = await fake.mention(channel=CHANNEL, user="U1", text="compare: what is a haiku?")
    await wait_for(lambda: fake.answers_in_thread(CHANNEL, question.ts))
    answer = fake.answers_in_thread(CHANNEL, question.ts)[0]
    await wait_for(lambda: set(answer.reactions) == {"one", "two", "handshake", "-1"})
    await fake.settle()
    assert answer.text.startswith("1️⃣ ") and "\n2️⃣ " in answer.text
    assert list(answer.reactions) == ["one", "two", "handshake", "-1"]  # in this order
    key = f"slack:{CHANNEL}:{answer.ts}"
    assert await rows(runtime, "SELECT mode FROM prompts") == [("compare",)]

    def comparison_votes():
        return rows(
            runtime,
            "SELECT r.candidate, v.emoji, v.reward FROM votes v JOIN responses r ON r.id = v.response_id ORDER BY v.id",
        )

    await fake.react(user="U2", message=answer, name="two")
    await wait_for(lambda: logged(caplog, "-> recorded") == 1)
    assert await comparison_votes() == [(0, "2️⃣", -1.0), (1, "2️⃣", 1.0)]
    await fake.react(user="U2", message=answer, name="two", remove=True)
    await fake.react(user="U3", message=answer, name="handshake::skin-tone-3")
    await wait_for(lambda: logged(caplog, "-> recorded") == 2 and logged(caplog, "-> retracted") == 1)
    assert await comparison_votes() == [(0, "🤝", 0.0), (1, "🤝", 0.0)]
    assert (await rows(runtime, "SELECT message_key FROM responses WHERE candidate = 0")) == [(key,)]


async def test_a_new_version_going_live_is_announced_in_the_chosen_channel(bot, fake, runtime, config, tiny_model_dir):
    announcing = SlackBot(runtime.service, config=dataclasses.replace(config, announce_channel="C0ANNOUNCE"))
    runtime.loop.announce = announcing.announce
    publish_copy(runtime.loop.registry, tiny_model_dir, metrics={"perplexity": 9.5}, counts={"train_examples": 40})
    assert await runtime.loop.check_registry() == 1
    posted = await wait_for(lambda: fake.bot_messages("C0ANNOUNCE"))
    assert posted[0].text.startswith("Now serving model version 1. Trained from version 0 on 40 examples")
    assert "perplexity 9.5" in posted[0].text


# --- scopes, membership and the platform's limits, enforced by the fake -----------------
async def test_a_group_dm_mention_is_answered_and_a_correction_there_is_stored(bot, fake, runtime, caplog):
    question = await fake.group_dm(channel="G0MPIM", user="U1", text=f"<@{BOT_USER}> hello all")
    await wait_for(lambda: fake.answers_in_thread("G0MPIM", question.ts))
    answer = fake.answers_in_thread("G0MPIM", question.ts)[0]
    await wait_for(lambda: len(answer.reactions) == 2)
    # A reply in the answer's thread arrives as message.mpim (mpim:history): a correction.
    await fake.group_dm(channel="G0MPIM", user="U2", text="better: hello everyone", thread_ts=question.ts)
    await wait_for(lambda: rows(runtime, "SELECT text FROM corrections"))
    assert await rows(runtime, "SELECT text FROM corrections") == [("hello everyone",)]
    assert fake.undelivered == []


async def test_a_prompt_missed_in_a_group_dm_is_found_after_a_restart(bot, fake, runtime, settings, config, caplog):
    fake.kinds["G0MPIM"] = "mpim"
    missed = fake.post_while_away(channel="G0MPIM", user="U1", text=f"<@{BOT_USER}> still there?")
    await _restart_and_answer_missed(settings, config, fake, caplog)
    assert len(fake.answers_in_thread("G0MPIM", missed.ts)) == 1
    assert "mpim" in fake.calls_to("users.conversations")[-1].args["types"]


async def test_announcing_where_the_bot_is_not_a_member_says_what_to_do(bot, fake, runtime, config, caplog):
    fake.outside.add("C0ANNOUNCE")
    announcing = SlackBot(runtime.service, config=dataclasses.replace(config, announce_channel="C0ANNOUNCE"))
    await announcing.announce("Now serving model version 1.")
    assert fake.bot_messages("C0ANNOUNCE") == []
    assert logged(caplog, "not_in_channel") == 1
    assert logged(caplog, "/invite @thumbtune") == 1 and logged(caplog, "chat:write.public") == 1
    # With chat:write.public the bot may post in a public channel it is not in.
    fake.scopes = fake.scopes | {"chat:write.public"}
    await announcing.announce("Now serving model version 1.")
    assert [m.text for m in fake.bot_messages("C0ANNOUNCE")] == ["Now serving model version 1."]


async def test_an_app_without_a_scope_gets_missing_scope_and_goes_on(runtime, config, caplog):
    caplog.set_level(logging.INFO, logger="bot.adapters.slack")
    scopes, _ = installed_from_manifest()
    async with FakeSlack(signing_secret=SECRET, scopes=scopes - {"reactions:write"}).running() as fake:
        slack_bot = SlackBot(runtime.service, config=dataclasses.replace(config, api_url=fake.api_url))
        async with slack_bot.serve_http(host="127.0.0.1", port=0) as url:
            fake.events_url = url
            question = await fake.mention(channel=CHANNEL, user="U1", text="no thumbs?")
            await wait_for(lambda: fake.answers_in_thread(CHANNEL, question.ts))
            await wait_for(lambda: logged(caplog, "missing_scope") == 2)  # 👍 and 👎 refused, logged
            await fake.settle()
    assert fake.answers_in_thread(CHANNEL, question.ts)[0].reactions == {}


def _web_api_methods_called(source: str) -> set[str]:
    """The Web API methods some source calls through slack_sdk's client (``client.chat_postMessage``)."""
    composite = {"files_upload_v2": {"files.getUploadURLExternal", "files.completeUploadExternal"}}
    from slack_sdk.web.async_client import AsyncWebClient

    names = {name for name in re.findall(r"client\.([a-z]+_[A-Za-z_0-9]+)\b", source) if hasattr(AsyncWebClient, name)}
    methods: set[str] = set()
    for name in names:
        methods |= composite.get(name, {name.replace("_", ".")})
    return methods


async def test_the_manifest_grants_what_each_feature_needs_and_nothing_else():
    from bot.adapters import slack

    scopes, events = installed_from_manifest()
    declared_scopes = {scope for need in slack.NEEDS for scope in need.grants}
    declared_events = {event for need in slack.NEEDS for event in need.events}
    declared_methods = {method for need in slack.NEEDS for method in need.methods}
    assert scopes == declared_scopes  # every scope is asked for by a feature, and each feature's are there
    assert events == declared_events
    # Every Web API method the adapter calls is declared, and Slack's scopes for it are in its feature's.
    package = Path(slack.__file__).parent
    called = _web_api_methods_called("\n".join(p.read_text(encoding="utf-8") for p in sorted(package.glob("*.py"))))
    assert called - {"apps.connections.open"} <= declared_methods, called - declared_methods
    assert {"chat.postMessage", "reactions.get", "users.info", "conversations.history"} <= called  # the scan works
    for need in slack.NEEDS:
        for method in need.methods:
            if method in METHOD_SCOPES:
                assert set(METHOD_SCOPES[method]) <= set(need.grants), (need.feature, method)
            elif method.startswith("conversations."):
                assert set(HISTORY_SCOPES.values()) <= set(need.grants), need.feature
            else:
                assert method == "users.conversations" and set(READ_SCOPES.values()) <= set(need.grants)
        for event in need.events:
            assert EVENT_SCOPES[event] in need.grants, (need.feature, event)
    # The scope table of docs/slack.md lists every scope.
    readme = (Path(slack.__file__).resolve().parents[3] / "docs" / "slack.md").read_text(encoding="utf-8")
    assert all(f"`{scope}`" in readme for scope in scopes)


async def test_a_reaction_is_acknowledged_before_any_look_up_and_a_bots_vote_is_taken_back(bot, fake, runtime, caplog):
    _, answer = await ask_in_channel(fake)
    looked_up = fake.hold("users.info")  # Slack is slow to answer users.info (a cold cache, a 429 wait)
    vote = await asyncio.wait_for(fake.react(user="U7", message=answer, name="+1"), timeout=3)
    assert vote.status == 200
    assert await votes(runtime) == [("👍", 1.0, f"slack:{CHANNEL}:{answer.ts}")]  # stored before the ack
    by_bot = await asyncio.wait_for(fake.react(user="UOTHERBOT", message=answer, name="-1"), timeout=3)
    assert by_bot.status == 200
    looked_up.set()
    await wait_for(lambda: logged(caplog, "was a bot's") == 1)
    assert await votes(runtime) == [("👍", 1.0, f"slack:{CHANNEL}:{answer.ts}")]  # the bot's vote is gone
    # Known now: the bot's next reaction is ignored before the ack, with no look-up.
    calls = len(fake.calls_to("users.info"))
    await fake.react(user="UOTHERBOT", message=answer, name="+1")
    assert logged(caplog, "by a bot") == 1 and len(fake.calls_to("users.info")) == calls


async def test_socket_mode_asks_slack_for_one_connection_at_start(runtime, fake, config, caplog):
    caplog.set_level(logging.INFO, logger="bot.adapters.slack")
    slack_bot = SlackBot(runtime.service, config=dataclasses.replace(config, app_token="xapp-test-token"))
    running = asyncio.create_task(slack_bot.serve())
    try:
        await wait_for(lambda: fake.sockets and logged(caplog, "missed while down") == 1, timeout=30)
    finally:
        await slack_bot.stop()
        await asyncio.wait_for(running, 30)
    assert len(fake.calls_to("apps.connections.open")) == 1  # Tier 1: once, not twice


async def test_missed_prompts_under_the_distributed_app_limits_are_found_and_a_failed_thread_is_skipped(
    bot, fake, runtime, settings, config, caplog
):
    # An app distributed outside the Marketplace: one history and one replies request per
    # window (a minute on Slack; 1 s here), 15 messages a page.
    for n in range(20):
        fake.post_while_away(channel=CHANNEL, user="U4", text=f"chatter {n}", ago_s=600 - n)
    old_mention = fake.post_while_away(channel=CHANNEL, user="U1", text=f"<@{BOT_USER}> first of all", ago_s=700)
    threads = []
    for n in range(2):
        parent = fake.post_while_away(channel=CHANNEL, user="U2", text=f"topic {n}", ago_s=300 - n)
        fake.post_while_away(channel=CHANNEL, user="U4", text="a reply", thread_ts=parent.ts, ago_s=200 - n)
        threads.append(parent)
    in_thread = fake.post_while_away(
        channel=CHANNEL, user="U3", text=f"<@{BOT_USER}> in a thread", thread_ts=threads[0].ts, ago_s=100
    )
    fake.limit_history(window_s=1.0)
    fake.fail("conversations.replies", "thread_not_found")  # the first thread read (the newest) fails

    await _restart_and_answer_missed(settings, config, fake, caplog)

    # The newest thread could not be read and is named in the log; the rest was read and answered.
    assert logged(caplog, "found 2 prompt(s) missed while down") == 1
    assert logged(caplog, f"skipped what Slack would not show: thread {threads[1].ts}") == 1
    assert len(fake.answers_in_thread(CHANNEL, old_mention.ts)) == 1  # on the second page of 15
    assert len(fake.answers_in_thread(CHANNEL, threads[0].ts)) == 1  # the mention inside the older thread
    assert in_thread.thread_ts == threads[0].ts
    assert all(int(call.args.get("limit", 0)) >= 15 for call in fake.calls_to("conversations.history"))
    assert len(fake.calls_to("conversations.history")) >= 3  # paged: 23+ messages, 15 a page (+ a 429)


async def test_an_answer_left_pending_is_looked_for_in_its_thread_before_it_is_posted(runtime, fake, config, caplog):
    """Answers a killed run generated and stored, then left pending: the one Slack had accepted
    (in its thread, never bound) is bound, not posted again; one never posted is posted; where
    the thread cannot be read, it is posted all the same (twice is better than never)."""
    caplog.set_level(logging.INFO, logger="bot.adapters.slack")

    async def left_pending(text: str) -> tuple[Message, str]:
        question = fake.post_while_away(channel=CHANNEL, user="U1", text=f"<@{BOT_USER}> {text}")
        where = Where(channel=CHANNEL, ts=question.ts, thread_ts=question.ts)
        prompt = IncomingPrompt(
            platform="slack",
            channel=CHANNEL,
            user="U1",
            text=text,
            conversation=where.conversation,
            event_id=message_id(where),
        )
        pending = await runtime.service.take_prompt(prompt, thread=question.ts)
        assert pending is not None
        return question, shown_text(await runtime.service.answer_pending(pending))  # stored, not posted

    unreadable, unreadable_text = await left_pending("in a thread Slack will not show")
    accepted, accepted_text = await left_pending("posted in the instant before the kill")
    never, never_text = await left_pending("never posted")
    for question, text in ((unreadable, unreadable_text), (accepted, accepted_text)):
        fake.post_while_away(channel=CHANNEL, user=BOT_USER, text=text, thread_ts=question.ts, ago_s=1)
    [posted_before] = fake.answers_in_thread(CHANNEL, accepted.ts)
    fake.fail("conversations.replies", "ratelimited")  # the first thread read, the oldest prompt's

    again = SlackBot(
        runtime.service, config=dataclasses.replace(config, reconcile_hours=0, http_host="127.0.0.1", http_port=0)
    )
    running = asyncio.create_task(again.serve())
    try:
        await wait_for(lambda: _no_pending(runtime), timeout=30)
        await wait_for(lambda: set(posted_before.reactions) == {"+1", "-1"})
    finally:
        await again.stop()
        await asyncio.wait_for(running, 30)

    assert fake.answers_in_thread(CHANNEL, accepted.ts) == [posted_before]
    assert [m.text for m in fake.answers_in_thread(CHANNEL, never.ts)] == [never_text]
    assert [m.text for m in fake.answers_in_thread(CHANNEL, unreadable.ts)] == [unreadable_text] * 2
    assert [call.args["ts"] for call in fake.calls_to("conversations.replies")] == [
        unreadable.ts,
        accepted.ts,
        never.ts,
    ]
    bound = {key for (key,) in await rows(runtime, "SELECT message_key FROM responses WHERE message_key IS NOT NULL")}
    assert f"slack:{CHANNEL}:{posted_before.ts}" in bound and len(bound) == 3
    assert logged(caplog, "was posted before the restart; recorded, not posted again") == 1
    assert logged(caplog, "to see whether the answer left pending was posted (ratelimited); posting it") == 1


async def _no_pending(runtime) -> bool:
    return await rows(runtime, "SELECT count(*) FROM pending_prompts") == [(0,)]


@pytest.mark.parametrize(
    ("shown", "text", "same"),
    [
        ("a plain answer", "a plain answer", True),
        ("  a plain answer\n", "a plain answer", True),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2", True),  # Slack escapes &, <, >
        ("see <https://example.com|example.com> now", "see example.com now", True),  # links it made
        ("<https://example.com>", "https://example.com", True),
        ("a plain answer", "another answer", False),
        (None, "a plain answer", False),
    ],
)
async def test_a_message_shows_a_text_as_slack_stores_it(shown: str | None, text: str, same: bool) -> None:
    assert shows({"text": shown}, text) is same
