"""Property-based tests of the adapters' payload translation (issue #8).

Slack: random and malformed envelopes, signed with the signing secret (or not), go
through the real bolt ``AsyncApp`` over HTTP, as in tests/test_slack.py. Whatever
arrives, the bot never answers 5xx, keeps answering a normal mention, and stores
nothing that is not a real prompt or a person's vote on one of its answers.

Discord: the pure translation helpers get random input directly; random reaction
events go through the fake gateway to the real discord.py client.

The service side (random prompts and reactions handed to it directly) is covered in
tests/test_reliability.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import types
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.adapters.discord import DiscordBot
from bot.adapters.discord import payloads as discord_payloads
from bot.adapters.discord.payloads import MAX_MESSAGE_CHARS, QUOTE_CHARS
from bot.adapters.slack import SlackBot, SlackConfig
from bot.feedback import normalize_emoji
from tests.fakes.discord import TOKEN, FakeDiscord, Person
from tests.fakes.slack import BOT_USER, FakeSlack, Message
from tests.helpers import wait_for

# The runtime fixture lives on the session loop; the async tests must share it.
on_session_loop = pytest.mark.asyncio(loop_scope="session")

SECRET = "fuzz-signing-secret"
CHANNEL = "C0001"

# The fixtures (a running bot and its fake platform) are shared by all examples of a test.
FUZZ = hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- strategies -----------------------------------------------------------------------
# Values of the wrong type, where a string or an object is expected.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
ODD_EMOJI = st.one_of(
    st.sampled_from(
        [
            "+1",
            "-1",
            "thumbsup",
            "thumbsdown",
            "+1::skin-tone-2",
            "-1::skin-tone-6",
            "+1::skin-tone-99",
            "+1::skin-tone-",
            "+1::skin-tone-2::skin-tone-3",
            ":+1:",
            "",
            ":",
            "::",
            " ",
            "+1 ",
            "\x00",
            "👍",
            "👍🏽",
            "🚩",
            "triangular_flag_on_post",
            "tada",
            "ｔｈｕｍｂｓｕｐ",
            "+" * 500,
        ]
    ),
    st.text(max_size=30),
)
IDS = st.one_of(st.sampled_from(["C0001", "D0001", "G0001", "", " ", "C0001\x00"]), st.text(max_size=12))
USERS = st.one_of(st.sampled_from(["U1", "U2", "UOTHERBOT", BOT_USER, "", "W0001"]), st.text(max_size=12))
TIMESTAMPS = st.one_of(st.sampled_from(["1700000001.000001", "", "0", "not-a-ts", "1e309"]), st.text(max_size=20))
TEXTS = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["", " \n\t ", "better:", "better: ", "Better: a fix", "stats", "forget me", "\u200b"]),
    st.builds(lambda text: f"<@{BOT_USER}> {text}", st.text(max_size=60)),
    st.builds(lambda text: f"<@{BOT_USER}|thumbtune>{text}", st.text(max_size=60)),
    st.just(f"<@{BOT_USER}>"),
    st.just("x" * 100_000),
)
ITEMS = st.one_of(
    JUNK,
    st.text(max_size=10),
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(st.sampled_from(["message", "file", "file_comment", ""]), JUNK),
            "channel": st.one_of(IDS, JUNK),
            "ts": st.one_of(TIMESTAMPS, JUNK),
        },
    ),
)
EVENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "app_mention",
            "message",
            "reaction_added",
            "reaction_removed",
            "team_join",
            "app_home_opened",
            "url_verification",
            "",
        ]
    ),
    st.text(max_size=15),
    JUNK,
)
EVENTS = st.fixed_dictionaries(
    {"type": EVENT_TYPES},
    optional={
        "channel": st.one_of(IDS, JUNK),
        "user": st.one_of(USERS, JUNK),
        "text": st.one_of(TEXTS, JUNK),
        "ts": st.one_of(TIMESTAMPS, JUNK),
        "thread_ts": st.one_of(TIMESTAMPS, JUNK),
        "subtype": st.one_of(
            st.sampled_from(
                ["bot_message", "message_changed", "message_deleted", "thread_broadcast", "file_share", "channel_join"]
            ),
            st.text(max_size=10),
            JUNK,
        ),
        "bot_id": st.one_of(st.sampled_from(["B0002", ""]), JUNK),
        "channel_type": st.one_of(st.sampled_from(["im", "channel", "group", "mpim", ""]), JUNK),
        "reaction": st.one_of(ODD_EMOJI, JUNK),
        "item_user": st.one_of(USERS, JUNK),
        "item": ITEMS,
    },
)
# Changes to the envelope around the event: odd ids, odd types, a missing or junk event.
ENVELOPE_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["event_callback", "app_rate_limited", "url_verification", ""]), JUNK),
        "event_id": st.one_of(st.text(max_size=20), JUNK),
        "team_id": st.one_of(st.text(max_size=8), JUNK),
        "api_app_id": st.one_of(st.text(max_size=8), JUNK),
        "authorizations": st.one_of(st.just([]), JUNK),
        "event": st.one_of(JUNK, st.text(max_size=10)),
        "challenge": st.one_of(st.text(max_size=10), JUNK),
    },
)


# --- Slack fixtures and helpers -------------------------------------------------------
@pytest.fixture
def no_prompt_rate_limit(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    # Random prompts then reach the model instead of being refused as a flood.
    monkeypatch.setenv("THUMBTUNE_PROMPTS_PER_MINUTE", "0")


@pytest.fixture
async def slack(no_prompt_rate_limit) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET, bots=frozenset({"UOTHERBOT"})).running() as fake:
        yield fake


@pytest.fixture
async def slack_bot(runtime, slack: FakeSlack) -> AsyncIterator[SlackBot]:
    config = SlackConfig(bot_token="xoxb-fuzz-token", signing_secret=SECRET, api_url=slack.api_url)
    bot = SlackBot(runtime.service, config=config)
    async with bot.serve_http(host="127.0.0.1", port=0) as url:
        slack.events_url = url
        yield bot
        await slack_idle(bot, slack)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def rows(runtime, sql: str, *params: Any) -> list[tuple]:
    async with runtime.database.reading() as db:
        cursor = await db.execute(sql, params)
        return [tuple(row) for row in await cursor.fetchall()]


# An event that reaches a SlackBot listener and changes nothing: a reaction on a file.
SENTINEL = {
    "type": "reaction_added",
    "user": "USENTINEL",
    "reaction": "tada",
    "item": {"type": "file", "file": "F1"},
    "event_ts": "1.000001",
}
_sentinel_ids = itertools.count(1)


async def slack_idle(bot: SlackBot, fake: FakeSlack) -> None:
    """Wait until the listener of every event sent so far has finished, and the fake has
    delivered all its echoes.

    bolt acknowledges an event before it starts the listener, so an idle bot cannot be
    told from a bot about to start one. A sentinel event goes after the others; bolt
    starts listeners in the order it acknowledged their requests, so once SlackBot's own
    bookkeeping (``events_started``) shows the sentinel's listener started, every earlier
    one has started too, and ``busy`` says whether one still runs. A sentinel that is never
    seen fails the test: its "nothing stored" checks would otherwise pass vacuously.
    """
    while True:
        await fake.settle()
        event_id = f"EvSENTINEL{next(_sentinel_ids):06d}"
        delivery = await fake.deliver(SENTINEL, event_id=event_id)
        assert delivery.status == 200, delivery
        try:
            await wait_for(lambda event_id=event_id: event_id in bot.events_started, timeout=10)
        except AssertionError:
            raise AssertionError(
                "the sentinel event never reached a SlackBot listener: cannot tell when the bot is idle"
            ) from None
        await wait_for(lambda: not bot.busy)
        if not fake.busy:
            return


def signed(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


async def post(http: aiohttp.ClientSession, fake: FakeSlack, body: bytes, headers: dict[str, str]) -> int:
    assert fake.events_url is not None
    async with http.post(fake.events_url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def answered(fake: FakeSlack, question: Message) -> Message:
    """Wait for the bot's reply in the question's thread."""
    return await wait_for(lambda: next(iter(fake.answers_in_thread(question.channel, question.ts)), None))


async def still_answers(fake: FakeSlack, runtime, user: str) -> None:
    """A normal mention after the fuzzing is answered, stored and offered for rating."""
    question = await fake.mention(channel=CHANNEL, user=user, text="are you still there?")
    answer = await answered(fake, question)
    await wait_for(lambda: set(answer.reactions) == {"+1", "-1"})
    assert await rows(runtime, "SELECT id FROM responses WHERE message_key = ?", f"slack:{CHANNEL}:{answer.ts}")


def answer_keys(fake: FakeSlack) -> set[str]:
    return {f"slack:{m.channel}:{m.ts}" for m in fake.bot_messages()}


async def high_water(runtime) -> dict[str, int]:
    """The highest row id in each table the adapters write to; see :func:`assert_nothing_garbage`."""
    marks = {}
    for table in ("prompts", "corrections", "votes"):
        [(top,)] = await rows(runtime, f"SELECT coalesce(max(id), 0) FROM {table}")
        marks[table] = top
    return marks


async def assert_nothing_garbage(runtime, fake: FakeSlack, since: dict[str, int]) -> None:
    """Rows added after ``since``: no empty or channel-less prompt, no empty correction, and
    votes only on the bot's answers, with a rating emoji in normal form."""
    for channel, text in await rows(runtime, "SELECT channel, text FROM prompts WHERE id > ?", since["prompts"]):
        assert isinstance(channel, str) and channel.strip(), f"prompt stored without a channel: {channel!r}"
        assert isinstance(text, str) and text.strip(), f"prompt stored with empty text: {text!r}"
    for (text,) in await rows(runtime, "SELECT text FROM corrections WHERE id > ?", since["corrections"]):
        assert isinstance(text, str) and text.strip(), f"correction stored with empty text: {text!r}"
    service = runtime.service
    for key, emoji in await rows(
        runtime,
        "SELECT r.message_key, v.emoji FROM votes v JOIN responses r ON r.id = v.response_id WHERE v.id > ?",
        since["votes"],
    ):
        assert key in answer_keys(fake), f"a vote on {key!r}, which is not an answer of the bot"
        assert emoji in service.votes.emoji and emoji == normalize_emoji(emoji)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def could_be_prompt(envelope: object) -> bool:
    """Whether a delivery may add a prompt row: an event for the bot with who, where and when."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), dict):
        return False
    event = envelope["event"]
    return (
        event.get("type") in ("app_mention", "message")
        and all(_is_id(event.get(name)) for name in ("channel", "user", "ts"))
        and isinstance(event.get("text"), str)
    )


def is_reaction_on_an_answer(envelope: object, fake: FakeSlack) -> bool:
    """Whether a delivery is a reaction added to one of the bot's answers (the first
    message the fake stores has the ts in TIMESTAMPS, so random events do hit one)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), dict):
        return False
    event = envelope["event"]
    item = event.get("item")
    return (
        event.get("type") == "reaction_added"
        and isinstance(item, dict)
        and f"slack:{item.get('channel')}:{item.get('ts')}" in answer_keys(fake)
    )


# --- Slack: events ----------------------------------------------------------------------
@on_session_loop
@FUZZ
@given(event=EVENTS, changes=ENVELOPE_CHANGES, retry=st.sampled_from([None, None, 1]))
# Found by this test: bolt answered 500 to a null "event"; a mention without a channel was
# stored as a prompt before Slack refused the reply.
@example(event={"type": None}, changes={"event": None}, retry=None)
@example(event={"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER}> hi", "ts": "1.1"}, changes={}, retry=None)
@example(
    event={"type": "message", "channel": " ", "channel_type": "im", "user": "U1", "text": "hi", "ts": "1.2"},
    changes={},
    retry=None,
)
async def test_slack_random_events_never_fail_or_store_garbage(slack_bot, slack, runtime, event, changes, retry):
    envelope = {**slack.envelope(event), **changes}
    before = await high_water(runtime)

    delivery = await slack.redeliver(envelope, retry_num=retry)
    await slack_idle(slack_bot, slack)

    assert delivery.status < 500, delivery
    await assert_nothing_garbage(runtime, slack, before)
    after = await high_water(runtime)
    if not could_be_prompt(envelope):
        assert after["prompts"] == before["prompts"], "a prompt stored for an event that is not one"
    if not is_reaction_on_an_answer(envelope, slack):
        assert after["votes"] == before["votes"], "a vote stored for a reaction not on an answer"


@on_session_loop
async def test_slack_still_answers_after_random_events(slack_bot, slack, runtime):
    # A short burst of odd events first, then a normal mention (the property test above
    # checks each kind on its own; this checks the bot is still whole afterwards).
    for event in (
        {"type": "app_mention"},
        {"type": "message", "channel": 5, "user": [], "text": None},
        {"type": "reaction_added", "item": "x", "reaction": 1},
        {"type": "app_mention", "channel": CHANNEL, "user": "U1", "text": {"a": 1}, "ts": "1.2"},
    ):
        assert (await slack.deliver(event)).status < 500
    await slack_idle(slack_bot, slack)
    assert await rows(runtime, "SELECT id FROM prompts") == []
    await still_answers(slack, runtime, user="USENTINEL")


@on_session_loop
async def test_slack_idle_waits_for_the_listener_of_what_was_sent(slack_bot, slack_answer, slack, runtime):
    # The check the property tests rest on: after slack_idle, the listener of an event
    # just sent has run to its end (here: the vote is stored), seen through SlackBot's own
    # bookkeeping, not through the names of bolt's private functions.
    vote = await slack.react(user="U2", message=slack_answer, name="+1")
    await slack_idle(slack_bot, slack)
    assert vote.envelope["event_id"] in slack_bot.events_started and not slack_bot.busy
    assert len(await rows(runtime, "SELECT id FROM votes")) == 1
    await slack.react(user="U2", message=slack_answer, name="+1", remove=True)
    await slack_idle(slack_bot, slack)
    assert await rows(runtime, "SELECT id FROM votes") == []


# --- Slack: reactions on a real answer --------------------------------------------------
@pytest.fixture
async def slack_answer(slack_bot, slack: FakeSlack) -> Message:
    question = await slack.mention(channel=CHANNEL, user="U1", text="rate me, please")
    answer = await answered(slack, question)
    await wait_for(lambda: set(answer.reactions) == {"+1", "-1"})
    await slack_idle(slack_bot, slack)
    return answer


@on_session_loop
@FUZZ
@given(emoji=ODD_EMOJI, user=st.sampled_from(["U1", "U2", "W0001", "UOTHERBOT", "Uß"]))
@example(emoji="🚩", user="U1")  # found by this test: the flag was dropped as "not a rating emoji"
async def test_slack_reactions_with_odd_emoji_vote_only_from_the_table(
    slack_bot, slack_answer, slack, runtime, emoji, user
):
    service = runtime.service
    before = await high_water(runtime)

    added = await slack.react(user=user, message=slack_answer, name=emoji)
    await slack_idle(slack_bot, slack)
    assert added.status < 500
    stored = await rows(runtime, "SELECT v.emoji FROM votes v JOIN responses r ON r.id = v.response_id")
    person = user != "UOTHERBOT"
    counts = emoji in service.votes.emoji and person
    assert stored == ([(normalize_emoji(emoji),)] if counts else [])
    if person and normalize_emoji(emoji) in service.votes.flag_emoji:  # 🚩 marks the answer, it is no vote
        assert await rows(
            runtime, "SELECT flagged FROM responses WHERE message_key = ?", f"slack:{CHANNEL}:{slack_answer.ts}"
        ) == [(1,)]
    await assert_nothing_garbage(runtime, slack, before)

    removed = await slack.react(user=user, message=slack_answer, name=emoji, remove=True)
    await slack_idle(slack_bot, slack)
    assert removed.status < 500
    assert await rows(runtime, "SELECT id FROM votes") == []


# --- Slack: bodies that are not events ----------------------------------------------------
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=8,
    ).map(lambda value: json.dumps(value).encode()),
    st.sampled_from(
        [
            b"",
            b"{}",
            b"[]",
            b"null",
            b'{"type": "event_callback"}',
            b'{"type": "url_verification"}',
            b'{"type": "event_callback", "event": null}',
            b"payload=",
            b"payload=%7B%7D",
            b"payload=not-json",
            b'payload={"type":"block_actions"}',
            b"command=%2Fask",
            b"command=%2Fask&text=%20",
            b"command=%2Fother&text=hi",
            b"ssl_check=1",
            b"\xff\xfe\x00",
        ]
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data",
        "",
    ]
)


@on_session_loop
@FUZZ
@given(
    body=BODIES,
    content_type=CONTENT_TYPES,
    signing=st.sampled_from(["signed", "signed", "wrong secret", "stale", "unsigned", "garbled"]),
)
# Found by this test: bolt answered 500 to these (a body that is not JSON, a timestamp that is not a number).
@example(body=b"\x00", content_type="application/json", signing="signed")
@example(body=b"", content_type="application/json", signing="garbled")
async def test_slack_garbage_bodies_never_get_a_5xx(slack_bot, slack, runtime, http, body, content_type, signing):
    headers = {"Content-Type": content_type} if content_type else {}
    if signing == "signed":
        headers |= signed(body)
    elif signing == "wrong secret":
        headers |= signed(body, secret="not-the-secret")
    elif signing == "stale":
        headers |= signed(body, timestamp=int(time.time()) - 3600)
    elif signing == "garbled":
        headers |= {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=zz"}
    calls_before, before = len(slack.calls), await high_water(runtime)

    status = await post(http, slack, body, headers)
    await slack_idle(slack_bot, slack)

    assert status < 500, status
    if signing != "signed":
        # Slack's SSL check comes unsigned by design; bolt answers it and handles nothing.
        assert status == 401 or (status == 200 and b"ssl_check=1" in body), status
        assert len(slack.calls) == calls_before  # nothing reached a listener
    await assert_nothing_garbage(runtime, slack, before)


@on_session_loop
@FUZZ
@given(
    form=st.fixed_dictionaries(
        {"command": st.sampled_from(["/ask", "/ask", "/other", ""])},
        optional={
            "text": TEXTS.filter(lambda text: len(text) < 5000),
            # Slack itself refuses to post in a blank channel; the fake is not that strict.
            "channel_id": IDS.filter(lambda channel: channel == "" or channel.strip()),
            "user_id": USERS,
            "trigger_id": st.text(max_size=10),
            "response_url": st.sampled_from(["", "not a url"]),
        },
    ),
    as_json=st.booleans(),
)
async def test_slack_odd_slash_commands_never_get_a_5xx(slack_bot, slack, runtime, http, form, as_json):
    if as_json:
        body, content_type = json.dumps(form).encode(), "application/json"
    else:
        body, content_type = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    before = await high_water(runtime)
    status = await post(http, slack, body, {"Content-Type": content_type, **signed(body)})
    await slack_idle(slack_bot, slack)
    assert status < 500, status
    await assert_nothing_garbage(runtime, slack, before)


# --- Discord: the pure translation helpers ----------------------------------------------
SNOWFLAKES = st.integers(min_value=0, max_value=2**64 - 1)


@given(text=st.text(max_size=5000))
def test_discord_fit_keeps_messages_within_discords_limit(text):
    fitted = discord_payloads.fit(text)
    assert len(fitted) <= MAX_MESSAGE_CHARS
    if len(text) <= MAX_MESSAGE_CHARS:
        assert fitted == text
    else:
        assert fitted.endswith("…") and text.startswith(fitted[:-1])


@given(prompt=st.text(max_size=3000), answer=st.text(max_size=3000))
def test_discord_quoted_ask_is_one_line_and_fits(prompt, answer):
    quoted = discord_payloads.quote(prompt)
    assert len(quoted) <= QUOTE_CHARS
    assert len(quoted.splitlines()) <= 1 and quoted == quoted.strip()
    # What /ask posts: the question as one quoted line, then the answer.
    posted = discord_payloads.fit(f"> {quoted}\n{answer}")
    assert len(posted) <= MAX_MESSAGE_CHARS and posted.startswith(f"> {quoted}")


@given(
    before=st.text(max_size=50),
    after=st.text(max_size=50),
    user_id=SNOWFLAKES,
    other=SNOWFLAKES,
    bang=st.booleans(),
)
def test_discord_without_mention_strips_the_bots_mention_only(before, after, user_id, other, bang):
    mention = f"<@{'!' if bang else ''}{user_id}>"
    content = f"{before}{mention}{after}{mention}"
    text = discord_payloads.without_mention(content, user_id)
    assert f"<@{user_id}>" not in text and f"<@!{user_id}>" not in text
    assert text == text.strip()
    if other != user_id:
        assert f"<@{other}>" in discord_payloads.without_mention(f"hi <@{other}>", user_id)


@given(
    channel_id=SNOWFLAKES,
    message_id=SNOWFLAKES,
    user_id=SNOWFLAKES,
    name=st.one_of(ODD_EMOJI, st.none()),
    custom_id=st.one_of(st.none(), SNOWFLAKES),
)
def test_discord_reaction_translation_never_fails(channel_id, message_id, user_id, name, custom_id):
    data = {"message_id": str(message_id), "channel_id": str(channel_id), "user_id": str(user_id), "type": 0}
    emoji = discord.PartialEmoji(name=name, id=custom_id)
    reaction = discord_payloads.reaction(discord.RawReactionActionEvent(data, emoji, "REACTION_ADD"))
    assert reaction.platform == "discord" and reaction.user == str(user_id)
    assert reaction.message_key == f"discord:{channel_id}:{message_id}"
    assert isinstance(reaction.emoji, str)
    if custom_id is not None:
        assert reaction.emoji not in {"👍", "👎"}  # a custom emoji never counts as a thumb


@given(
    channel_id=SNOWFLAKES,
    reference=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "message_id": st.one_of(st.none(), SNOWFLAKES),
                "channel_id": st.one_of(st.none(), SNOWFLAKES),
                "type": st.sampled_from(list(discord.MessageReferenceType)),
            }
        ),
    ),
)
def test_discord_replied_key_names_the_replied_message_or_nothing(channel_id, reference):
    ref = None
    if reference is not None:
        ref = discord.MessageReference(message_id=0, channel_id=0, type=reference["type"])
        ref.message_id, ref.channel_id = reference["message_id"], reference["channel_id"]
    message = types.SimpleNamespace(reference=ref, channel=types.SimpleNamespace(id=channel_id))
    key = discord_payloads.replied_key(message)  # type: ignore[arg-type]
    if ref is None or ref.message_id is None or ref.type == discord.MessageReferenceType.forward:
        assert key is None
    else:
        channel = ref.channel_id or channel_id
        assert key == f"discord:{channel}:{ref.message_id}"


# --- Discord: random reaction events through the fake gateway ---------------------------
BOT = Person(9000, "thumbtune", bot=True)
ALICE = Person(1001, "alice")


@pytest.fixture
async def discord_bot(runtime, fake_discord: FakeDiscord) -> AsyncIterator[DiscordBot]:
    client = DiscordBot(service=runtime.service, token=TOKEN, guild_id=fake_discord.guild_id, guild_ready_timeout=0.2)
    serving = asyncio.create_task(client.serve())
    await wait_for(lambda: client.is_ready() or serving.done(), timeout=15)
    if serving.done():
        serving.result()
    yield client
    await client.close()
    await asyncio.wait_for(serving, timeout=10)


@pytest.fixture
async def discord_answer(discord_bot, fake_discord: FakeDiscord) -> dict[str, Any]:
    prompt_id = await fake_discord.say(ALICE, "rate me", mention_bot=True)
    answer = await wait_for(lambda: fake_discord.answer_to(prompt_id), timeout=30)
    answer_id = int(answer["id"])
    await wait_for(lambda: {(answer_id, BOT.id, "👍"), (answer_id, BOT.id, "👎")} <= fake_discord.reactions)
    await discord_idle()
    return answer


async def discord_idle() -> None:
    """Wait until no event handler of the bot is running (discord.py names their tasks)."""

    def idle() -> bool:
        return not any(
            task.get_name().startswith("discord.py: on_") and not task.done() for task in asyncio.all_tasks()
        )

    await wait_for(idle)


@on_session_loop
@FUZZ
@given(
    on_answer=st.booleans(),
    message_id=SNOWFLAKES,
    channel_id=st.sampled_from([200, 300, 400, 12345]),
    user_id=st.sampled_from([1001, 1002, BOT.id, 0]),
    emoji=ODD_EMOJI,
    custom_id=st.one_of(st.none(), SNOWFLAKES),
    author=st.sampled_from(["absent", "bot", "someone"]),
    member_is_bot=st.one_of(st.none(), st.booleans()),
    remove=st.booleans(),
)
# One parameter per hypothesis strategy, besides the fixtures.
async def test_discord_random_reactions_vote_only_on_answers_with_table_emoji(  # noqa: PLR0913
    discord_answer,
    fake_discord,
    runtime,
    on_answer,
    message_id,
    channel_id,
    user_id,
    emoji,
    custom_id,
    author,
    member_is_bot,
    remove,
):
    if on_answer:
        channel_id, message_id = int(discord_answer["channel_id"]), int(discord_answer["id"])
    data: dict[str, Any] = {
        "user_id": str(user_id),
        "channel_id": str(channel_id),
        "message_id": str(message_id),
        "emoji": {"id": str(custom_id) if custom_id else None, "name": emoji},
        "burst": False,
        "type": 0,
    }
    if author != "absent":
        data["message_author_id"] = str(BOT.id if author == "bot" else ALICE.id)
    if member_is_bot is not None:
        data["guild_id"] = str(fake_discord.guild_id)
        data["member"] = {
            "user": Person(user_id, "someone", bot=member_is_bot).user(),
            "roles": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
        }
    event = "MESSAGE_REACTION_REMOVE" if remove else "MESSAGE_REACTION_ADD"
    await fake_discord.dispatch(event, data)
    # A normal message after it; once it is answered, the reaction before it has been handled.
    prompt_id = await fake_discord.say(ALICE, "still there?", channel_id=fake_discord.dm_channel_id)
    await wait_for(lambda: fake_discord.answer_to(prompt_id), timeout=30)
    await discord_idle()

    stored = await rows(runtime, "SELECT r.message_key, v.emoji FROM votes v JOIN responses r ON r.id = v.response_id")
    counts = (
        on_answer
        and not remove
        and custom_id is None
        and runtime.service.votes.emoji.reward(emoji) is not None
        and user_id != BOT.id
        and author != "someone"
        and not member_is_bot
    )
    answer_key = f"discord:{discord_answer['channel_id']}:{discord_answer['id']}"
    assert stored == ([(answer_key, normalize_emoji(emoji))] if counts else [])
    if counts:  # take it back, so the next example starts with no vote
        await fake_discord.dispatch(
            "MESSAGE_REACTION_REMOVE", {k: v for k, v in data.items() if k not in ("member", "message_author_id")}
        )
        await wait_for(lambda: no_votes(runtime))


async def no_votes(runtime) -> bool:
    return not await rows(runtime, "SELECT id FROM votes")
