"""The core service through the real generator and storage (tiny model, SQLite file)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, message_key
from bot.feedback import EmojiTable, normalize_emoji
from bot.service import Reconciled
from storage.repository import VoteOutcome
from tests.helpers import stored_response


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("+1", "👍"),
        (":+1::skin-tone-3:", "👍"),
        ("thumbsup::skin-tone-6", "👍"),
        ("👍🏽", "👍"),
        ("👍\ufe0f", "👍"),
        ("ThumbsDown", "👎"),
        ("-1", "👎"),
        (":thumbsdown::skin-tone-2:", "👎"),
        ("Tada", "tada"),
        ("🎉", "🎉"),
    ],
)
def test_emoji_names_are_normalised(raw: str, normal: str):
    assert normalize_emoji(raw) == normal


def test_emoji_table_maps_aliases_and_ignores_unknown():
    table = EmojiTable({"👍": 1, "+1": 1, "-1": -1, "🎉": 0.5})
    assert table.reward("+1::skin-tone-2") == 1.0
    assert table.reward("👍🏿") == 1.0
    assert table.reward("🎉") == 0.5
    assert table.reward("heart") is None and "heart" not in table
    # An operator's table may name a thumb any way; every name of it gets that reward.
    assert EmojiTable({"thumbsup": 2}).reward("+1::skin-tone-5") == EmojiTable({"+1": 2}).reward("👍") == 2.0
    with pytest.raises(ValueError, match="one emoji"):
        EmojiTable({"+1": 1, "thumbsup": 0.5})


def _prompt(text: str, **extra) -> IncomingPrompt:
    return IncomingPrompt(platform="slack", channel="C1", user="U1", text=text, **extra)


async def _answer_and_post(runtime, text="what is the weather like", **extra):
    reply = await runtime.service.on_prompt(_prompt(text, **extra))
    assert reply is not None and reply.ok, reply
    key = message_key("slack", "C1", f"{reply.response_ids[0]}.0")
    await runtime.service.answer_posted(reply.response_ids[0], key)
    return reply, key


async def test_prompt_is_answered_and_stored_with_version_and_sampling(runtime):
    reply, _ = await _answer_and_post(runtime)
    assert reply.model_version == 0 and reply.text
    async with runtime.database.reading() as db:
        rows = await (
            await db.execute(
                "SELECT p.platform, p.author, p.text, r.text, r.model_version, r.temperature, r.max_new_tokens"
                " FROM prompts p JOIN responses r ON r.prompt_id = p.id"
            )
        ).fetchall()
    assert len(rows) == 1
    platform, author, text, answer, version, temperature, max_new = rows[0]
    assert (platform, text, version, temperature, max_new) == ("slack", "what is the weather like", 0, 0.9, 24)
    assert author != "U1" and "U1" not in author  # only the keyed hash is stored
    assert answer == reply.text or (answer == "" and reply.text == "…")


async def test_reactions_become_votes_and_removals_retract_them(runtime):
    reply, key = await _answer_and_post(runtime)
    service = runtime.service
    up = IncomingReaction(platform="slack", message_key=key, user="U2", emoji="+1::skin-tone-4", event_id="E1")
    assert await service.on_reaction(up) is VoteOutcome.RECORDED
    assert await service.on_reaction(up) is VoteOutcome.DUPLICATE_EVENT
    down = IncomingReaction(platform="slack", message_key=key, user="U2", emoji="-1", event_id="E2")
    assert await service.on_reaction(down) is VoteOutcome.RECORDED
    removed = IncomingReaction(platform="slack", message_key=key, user="U2", emoji="+1", event_id="E3")
    assert await service.on_reaction_removed(removed) is VoteOutcome.RETRACTED
    votes = await runtime.repository.votes_since(0)
    assert [(v.emoji, v.reward, v.response_id) for v in votes] == [("👎", -1.0, reply.response_ids[0])]


async def test_unknown_emoji_and_foreign_messages_are_ignored(runtime):
    _, key = await _answer_and_post(runtime)
    service = runtime.service
    party = IncomingReaction(platform="slack", message_key=key, user="U2", emoji="tada")
    assert await service.on_reaction(party) is VoteOutcome.UNKNOWN_EMOJI
    elsewhere = IncomingReaction(platform="slack", message_key="slack:C1:999.9", user="U2", emoji="+1")
    assert await service.on_reaction(elsewhere) is VoteOutcome.UNKNOWN_RESPONSE
    assert await service.on_reaction_removed(elsewhere) is VoteOutcome.UNKNOWN_RESPONSE
    assert await runtime.repository.votes_since(0) == []


@pytest.mark.parametrize("text", ["", "   \n "])
async def test_an_empty_prompt_gets_a_clear_message_and_stores_nothing(runtime, text):
    reply = await runtime.service.on_prompt(_prompt(text))
    assert reply is not None and not reply.ok and "empty" in reply.text
    assert await runtime.repository.approval_by_version() == []


async def test_a_huge_prompt_gets_the_limit_and_stores_nothing(runtime):
    reply = await runtime.service.on_prompt(_prompt("x" * 5000))
    assert reply is not None and not reply.ok
    assert "5,000" in reply.text and "2,000" in reply.text
    assert await runtime.repository.approval_by_version() == []


async def test_a_retried_prompt_event_is_answered_once(runtime):
    first = await runtime.service.on_prompt(_prompt("hello", event_id="Ev1"))
    second = await runtime.service.on_prompt(_prompt("hello", event_id="Ev1"))
    assert first is not None and first.ok
    assert second is None
    assert (await runtime.repository.approval_by_version())[0].answers == 1


async def test_conversation_turns_become_the_dialogue_context(runtime):
    _first, _ = await _answer_and_post(runtime, "hello", conversation="slack:C1:100.0")
    await _answer_and_post(runtime, "what should I eat", conversation="slack:C1:100.0")
    async with runtime.database.reading() as db:
        context = (await (await db.execute("SELECT context FROM prompts ORDER BY id DESC LIMIT 1")).fetchone())[0]
    stored_first = (await runtime.repository.conversation_history("slack:C1:100.0"))[0].bot_text
    assert context == f"User: hello\nBot: {stored_first}\nUser: what should I eat\nBot:"


async def test_a_correction_is_stored_against_the_answer(runtime):
    reply, key = await _answer_and_post(runtime)
    correction_id = await runtime.service.on_correction(
        IncomingCorrection(platform="slack", message_key=key, user="U3", text=" It is sunny. ")
    )
    assert correction_id is not None
    async with runtime.database.reading() as db:
        row = await (await db.execute("SELECT response_id, text FROM corrections")).fetchone()
    assert tuple(row) == (reply.response_ids[0], "It is sunny.")


def test_rate_limiter_allows_a_burst_then_refills():
    from bot.limits import RateLimiter

    now = [0.0]
    limiter = RateLimiter(per_minute=6, burst=2, clock=lambda: now[0])
    assert limiter.try_acquire("a") == 0.0
    assert limiter.try_acquire("a") == 0.0
    assert limiter.try_acquire("a") == pytest.approx(10.0)  # 6 per minute: one every 10 s
    assert limiter.try_acquire("b") == 0.0  # per person
    now[0] = 10.0
    assert limiter.try_acquire("a") == 0.0
    bounded = RateLimiter(per_minute=1, burst=1, max_keys=3, clock=lambda: now[0])
    for person in "wxyz":
        bounded.try_acquire(person)
    assert len(bounded._buckets) == 3


async def test_a_fast_asker_is_told_to_slow_down(runtime):
    from bot.limits import RateLimiter

    service = runtime.service
    service.answers.rate_limiter = RateLimiter(per_minute=1, burst=2)
    replies = [await service.on_prompt(_prompt(f"hello {i}")) for i in range(3)]
    assert [r.ok for r in replies] == [True, True, False]
    assert "Slow down" in replies[2].text and "s." in replies[2].text
    other = await service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user="U9", text="hi"))
    assert other.ok
    assert (await runtime.repository.approval_by_version())[0].answers == 3


async def test_the_daily_vote_cap_refuses_further_votes(runtime):
    runtime.service.votes.daily_vote_cap = 2
    keys = [(await _answer_and_post(runtime, f"question {i}"))[1] for i in range(3)]
    outcomes = [
        await runtime.service.on_reaction(IncomingReaction(platform="slack", message_key=k, user="U2", emoji="+1"))
        for k in keys
    ]
    assert outcomes == [VoteOutcome.RECORDED, VoteOutcome.RECORDED, VoteOutcome.CAPPED]
    assert len(await runtime.repository.votes_since(0)) == 2


async def test_the_flag_marks_an_answer_and_is_not_a_vote(runtime):
    reply, key = await _answer_and_post(runtime)
    outcome = await runtime.service.on_reaction(
        IncomingReaction(platform="slack", message_key=key, user="U2", emoji="triangular_flag_on_post")
    )
    assert outcome is VoteOutcome.FLAGGED
    assert (await stored_response(runtime.repository, reply.response_ids[0])).flagged
    assert await runtime.repository.votes_since(0) == []


async def test_channels_outside_the_allow_list_are_ignored(runtime):
    runtime.service.answers.allowed_channels = frozenset({"C-allowed"})
    assert await runtime.service.on_prompt(_prompt("hello")) is None
    allowed = IncomingPrompt(platform="slack", channel="C-allowed", user="U1", text="hello")
    assert (await runtime.service.on_prompt(allowed)).ok
    shell = IncomingPrompt(platform="shell", channel="local", user="me", text="hello")
    assert (await runtime.service.on_prompt(shell)).ok


async def test_reconcile_records_missed_reactions_and_retracts_removed_ones(runtime):
    service = runtime.service
    _, key = await _answer_and_post(runtime)
    for user, emoji in (("U2", "+1"), ("U3", "-1")):
        await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user=user, emoji=emoji))
    # While the bot was down: U3 removed 👎, U4 added 👍 (with a skin tone), U5 added an
    # unknown emoji and U6 flagged the answer.
    now_shown = [("U2", "+1"), ("U4", "+1::skin-tone-2"), ("U5", "tada"), ("U6", "triangular_flag_on_post")]
    result = await service.reconcile(platform="slack", message_key=key, reactions=now_shown)
    assert (result.added, result.retracted) == (1, 1)
    votes = await runtime.repository.votes_since(0)
    keys = {service.persons.key("slack", u): u for u in ("U2", "U3", "U4")}
    assert sorted((keys[v.voter], v.emoji) for v in votes) == [("U2", "👍"), ("U4", "👍")]
    assert (await runtime.repository.response_by_message(key)).flagged
    again = await service.reconcile(platform="slack", message_key=key, reactions=now_shown)
    assert (again.added, again.retracted) == (0, 0)
    unknown = await service.reconcile(platform="slack", message_key="slack:C1:9.9", reactions=now_shown)
    assert (unknown.added, unknown.retracted) == (0, 0)


async def test_reconcile_retracts_nothing_for_an_emoji_whose_list_was_cut_short(runtime):
    service = runtime.service
    _, key = await _answer_and_post(runtime)
    for user, emoji in (("U2", "+1"), ("U3", "+1"), ("U4", "-1")):
        await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user=user, emoji=emoji))
    # The platform listed only U2 of the 👍 people; U4's 👎 is really gone.
    result = await service.reconcile(
        platform="slack", message_key=key, reactions=[("U2", "+1")], incomplete=["+1::skin-tone-3"]
    )
    assert (result.added, result.retracted) == (0, 1)
    keys = {service.persons.key("slack", u): u for u in ("U2", "U3", "U4")}
    votes = await runtime.repository.votes_since(0)
    assert sorted((keys[v.voter], v.emoji) for v in votes) == [("U2", "👍"), ("U3", "👍")]


async def test_reconcile_never_undoes_a_live_reaction_that_arrives_while_the_answer_is_read(runtime):
    # bot.catchup's race policy: while one answer is read and reconciled, live reaction
    # events on it wait, in their arrival order, and apply on top of the reconciliation.
    service = runtime.service
    _, key = await _answer_and_post(runtime)
    _, other = await _answer_and_post(runtime, "another question")
    up = IncomingReaction(platform="slack", message_key=key, user="U2", emoji="+1")
    flicker = IncomingReaction(platform="slack", message_key=key, user="U3", emoji="-1")
    elsewhere = IncomingReaction(platform="slack", message_key=other, user="U2", emoji="+1")
    async with service.reconciling(key):
        # Arrive after the platform was read (the reading shows none of them).
        live = [
            asyncio.create_task(service.on_reaction(up)),
            asyncio.create_task(service.on_reaction(flicker)),
            asyncio.create_task(service.on_reaction_removed(flicker)),
        ]
        assert await service.on_reaction(elsewhere) is VoteOutcome.RECORDED  # other answers never wait
        result = await service.reconcile(platform="slack", message_key=key, reactions=[])
        assert not any(task.done() for task in live)
    assert (result.added, result.retracted) == (0, 0)
    outcomes = await asyncio.wait_for(asyncio.gather(*live), 10)
    assert outcomes == [VoteOutcome.RECORDED, VoteOutcome.RECORDED, VoteOutcome.RETRACTED]
    keys = {service.persons.key("slack", user): user for user in ("U2", "U3")}
    on_key = (await runtime.repository.response_by_message(key)).response_id
    stored = [(keys[v.voter], v.emoji) for v in await runtime.repository.votes_since(0) if v.response_id == on_key]
    assert stored == [("U2", "👍")]


async def test_one_persons_reaction_events_apply_in_arrival_order(runtime):
    _, key = await _answer_and_post(runtime)
    service = runtime.service
    down = IncomingReaction(platform="slack", message_key=key, user="U7", emoji="-1")
    up = IncomingReaction(platform="slack", message_key=key, user="U7", emoji="+1")
    # Add 👎, remove it, add 👍 — all in flight at once, as handler tasks are.
    await asyncio.gather(service.on_reaction(down), service.on_reaction_removed(down), service.on_reaction(up))
    assert [(v.emoji, v.reward) for v in await runtime.repository.votes_since(0)] == [("👍", 1.0)]
    assert service.votes._reaction_locks == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stats", ("stats", None)),
        ("  Retrain! ", ("retrain", None)),
        ("rollback 3", ("rollback", 3)),
        ("rollback v2", ("rollback", 2)),
        ("models", ("models", None)),
        ("stats 3", None),
        ("what are your stats", None),
        ("retrain the model please", None),
    ],
)
def test_chat_commands_are_whole_messages(text, expected):
    from bot.commands import parse_command

    command = parse_command(text)
    assert (None if command is None else (command.name, command.version)) == expected


async def test_admin_commands_are_refused_politely_for_others(runtime):
    for text in ("retrain", "rollback 1", "models"):
        reply = await runtime.service.on_prompt(_prompt(text))
        assert not reply.ok and "only the bot's admins" in reply.text and "THUMBTUNE_ADMINS" in reply.text
    assert await runtime.repository.approval_by_version() == []  # nothing was generated


async def test_stats_in_chat_gives_the_table_and_a_chart(runtime):
    await _answer_and_post(runtime)
    reply = await runtime.service.on_prompt(_prompt("stats"))
    assert not reply.ok and "approval" in reply.text
    assert reply.attachment is not None and reply.attachment.read_bytes()[:4] == b"\x89PNG"


async def test_reconcile_adds_newly_listed_people_even_for_an_emoji_read_in_part(runtime):
    service = runtime.service
    _, key = await _answer_and_post(runtime)
    for user, emoji in (("U2", "+1"), ("U3", "-1")):
        await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user=user, emoji=emoji))
    # The platform listed only part of the 👍 people (not U2), and nobody with 👎.
    result = await service.reconcile(
        platform="slack", message_key=key, reactions=[("U4", "+1")], incomplete={"+1::skin-tone-3"}
    )
    assert (result.added, result.retracted) == (1, 1)
    voters = {service.persons.key("slack", u): u for u in ("U2", "U3", "U4")}
    assert sorted((voters[v.voter], v.emoji) for v in await runtime.repository.votes_since(0)) == [
        ("U2", "👍"),
        ("U4", "👍"),
    ]


async def test_old_stats_charts_are_cleaned_up(runtime):
    from bot.commands import CHARTS_KEPT

    charts = runtime.service.commands.charts_dir
    charts.mkdir(parents=True, exist_ok=True)
    for day in range(CHARTS_KEPT + 5):
        (charts / f"stats-2020010{day % 10}-{day:06d}.png").write_bytes(b"old")
    reply = await runtime.service.on_prompt(_prompt("stats"))
    left = sorted(charts.glob("stats-*.png"))
    assert len(left) == CHARTS_KEPT and reply.attachment in left


# --- forget me ---------------------------------------------------------------------------
def _asked_by(user: str, text: str, **extra) -> IncomingPrompt:
    return IncomingPrompt(platform="slack", channel="C1", user=user, text=text, **extra)


async def test_forget_me_sticks_against_replayed_events_and_catch_up(runtime):
    service = runtime.service
    _, key = await _answer_and_post(runtime)
    up = IncomingReaction(platform="slack", message_key=key, user="U9", emoji="+1", event_id="Ev-up")
    assert await service.on_reaction(up) is VoteOutcome.RECORDED
    await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user="U2", emoji="-1"))

    reply = await service.on_prompt(_asked_by("U9", "forget me"))
    assert reply is not None and "1 vote(s)" in reply.text

    # A retried delivery (same id), a replay without an id (a Discord resume), a catch-up
    # that still sees their 👍 on Slack: none brings the vote back; U2's vote stays.
    assert await service.on_reaction(up) is VoteOutcome.DUPLICATE_EVENT
    replayed = IncomingReaction(platform="slack", message_key=key, user="U9", emoji="thumbsup")
    assert await service.on_reaction(replayed) is VoteOutcome.FORGOTTEN
    shown = [("U9", "+1"), ("U2", "-1")]
    assert await service.reconcile(platform="slack", message_key=key, reactions=shown) == Reconciled()
    u2 = service.persons.key("slack", "U2")
    assert [(v.voter, v.emoji) for v in await runtime.repository.votes_since(0)] == [(u2, "👎")]

    # Chatting again afterwards: a new person. Their new prompt and votes on new answers count.
    again = await service.on_prompt(_asked_by("U9", "I am back"))
    assert again is not None and again.ok
    new_key = message_key("slack", "C1", "new.0")
    await service.answer_posted(again.response_ids[0], new_key)
    vote = IncomingReaction(platform="slack", message_key=new_key, user="U9", emoji="👍")
    assert await service.on_reaction(vote) is VoteOutcome.RECORDED
    # A second `forget me` moves the tombstone: those go too, and stay gone.
    reply = await service.on_prompt(_asked_by("U9", "please forget me."))
    assert reply is not None and "1 prompt(s)" in reply.text and "1 vote(s)" in reply.text
    assert await service.reconcile(platform="slack", message_key=new_key, reactions=[("U9", "+1")]) == Reconciled()
    assert [v.voter for v in await runtime.repository.votes_since(0)] == [u2]


async def test_forget_me_takes_their_turns_out_of_a_thread_and_out_of_the_kto_export(runtime):
    from trainer.export import export_records

    service, thread = runtime.service, "slack:C1:100.0"
    mine = await service.on_prompt(_asked_by("U9", "tell me about my zanzibar plan", conversation=thread))
    assert mine is not None and mine.ok
    theirs = await service.on_prompt(_asked_by("U2", "and what do you think", conversation=thread))
    assert theirs is not None and theirs.ok
    key = message_key("slack", "C1", "200.0")
    await service.answer_posted(theirs.response_ids[0], key)
    await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user="U3", emoji="+1"))
    db = runtime.database.path
    before = await export_records(db, fmt="kto")
    assert len(before) == 1 and "zanzibar" in str(before[0]["prompt"])

    await service.on_prompt(_asked_by("U9", "forget me"))

    # U2's follow-up keeps its own question only: U9's question and the bot's answer to it are gone.
    async with runtime.database.reading() as conn:
        rows = await (await conn.execute("SELECT text, context FROM prompts")).fetchall()
    assert [tuple(row) for row in rows] == [("and what do you think", "User: and what do you think\nBot:")]
    after = await export_records(db, fmt="kto")
    assert [record["prompt"] for record in after] == ["User: and what do you think\nBot:"]
    assert not any("zanzibar" in str(record["prompt"]) for record in after)


async def test_pending_prompts_are_answered_once_reusing_a_stored_answer_and_apologised_for_when_late(runtime):
    service = runtime.service
    prompt = IncomingPrompt(platform="slack", channel="C1", user="U1", text="hello there", event_id="Ev1")
    pending = await service.take_prompt(prompt, thread="1.0")
    assert pending is not None
    assert await service.take_prompt(prompt, thread="1.0") is None  # a retry of the same event
    reply = await service.answer_pending(pending)
    assert reply.ok and reply.response_ids
    # Killed before posting: the next run finds it pending, with its answer, and does not generate again.
    [left] = await service.pending_prompts("slack")
    assert left.prompt_id is not None and left.user == "U1" and left.thread == "1.0"
    again = await service.answer_pending(left)
    assert (again.text, again.response_ids) == (reply.text, reply.response_ids)
    await service.pending_answered(left)
    assert await service.pending_prompts("slack") == []

    late = await service.take_prompt(replace(prompt, event_id="Ev2"), thread="2.0")
    assert late is not None
    apology = await service.answer_pending(late, late=True)
    assert not apology.ok and "too long ago" in apology.text
    async with runtime.database.reading() as db:
        [(prompts,)] = await (await db.execute("SELECT count(*) FROM prompts")).fetchall()
    assert prompts == 1
