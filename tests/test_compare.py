"""Comparison mode through the real service, generator and storage (tiny model, SQLite file)."""

from __future__ import annotations

import io

from prometheus_client.parser import text_string_to_metric_families

from bot.adapters.shell import ShellChat
from bot.comparison import FIRST_EMOJI, SECOND_EMOJI, Verdict, split_compare_request, verdict_of
from bot.events import IncomingPrompt, IncomingReaction, message_key
from storage.repository import VoteOutcome
from tests.helpers import stored_response
from trainer.dataset import BuildOptions, build_dataset


def test_verdict_names_and_prefix():
    assert verdict_of("1️⃣") is verdict_of("1\u20e3") is verdict_of("one") is Verdict.FIRST
    assert verdict_of(":two:") is Verdict.SECOND
    assert verdict_of("🤝🏽") is verdict_of("handshake") is Verdict.TIE
    assert verdict_of("-1") is verdict_of("👎") is Verdict.BOTH_BAD
    assert verdict_of("👍") is None and verdict_of("+1") is None
    assert split_compare_request("Compare:  why is the sky blue ") == (True, "why is the sky blue")
    assert split_compare_request("what should I compare: x or y") == (False, "what should I compare: x or y")


async def _compare(runtime, text="compare: what is the weather like", user="U1"):
    reply = await runtime.service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user=user, text=text))
    assert reply is not None and reply.ok and reply.compare, reply
    key = message_key("slack", "C1", f"{reply.response_ids[0]}.0")
    await runtime.service.answer_posted(reply.response_ids[0], key)
    return reply, key


async def _votes(runtime) -> list[tuple[int, int, str, float, int]]:
    """(prompt id, candidate, emoji, reward, comparison) of every stored vote."""
    async with runtime.database.reading() as db:
        cursor = await db.execute(
            "SELECT r.prompt_id, r.candidate, v.emoji, v.reward, v.comparison FROM votes v"
            " JOIN responses r ON r.id = v.response_id ORDER BY v.id"
        )
        return [tuple(row) for row in await cursor.fetchall()]


async def test_compare_prefix_stores_two_candidates_and_a_compare_prompt(runtime):
    reply, _ = await _compare(runtime)
    assert len(reply.response_ids) == 2 and reply.versions == (0, 0)
    assert reply.reactions == ("1️⃣", "2️⃣", "🤝", "👎")
    assert reply.text.startswith("1️⃣ ") and "\n2️⃣ " in reply.text
    async with runtime.database.reading() as db:
        rows = await (
            await db.execute(
                "SELECT p.mode, p.text, r.candidate, r.model_version FROM prompts p"
                " JOIN responses r ON r.prompt_id = p.id ORDER BY r.candidate"
            )
        ).fetchall()
    assert [tuple(row) for row in rows] == [
        ("compare", "what is the weather like", 0, 0),
        ("compare", "what is the weather like", 1, 0),
    ]
    normal = await runtime.service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user="U1", text="hi"))
    assert not normal.compare and normal.reactions == ("👍", "👎") and len(normal.response_ids) == 1


async def test_verdicts_become_one_vote_per_candidate_and_removal_takes_both(runtime):
    service = runtime.service
    reply, key = await _compare(runtime)
    prompt = (await stored_response(runtime.repository, reply.response_ids[0])).prompt_id

    def react(emoji, user="U2", event=None):
        return IncomingReaction(platform="slack", message_key=key, user=user, emoji=emoji, event_id=event)

    assert await service.on_reaction(react("one", event="E1")) is VoteOutcome.RECORDED
    assert await service.on_reaction(react("one", event="E1")) is VoteOutcome.DUPLICATE_EVENT
    assert await service.on_reaction(react("1️⃣")) is VoteOutcome.ALREADY_RECORDED
    assert await _votes(runtime) == [(prompt, 0, FIRST_EMOJI, 1.0, 1), (prompt, 1, FIRST_EMOJI, -1.0, 1)]
    assert await service.on_reaction_removed(react("one")) is VoteOutcome.RETRACTED
    assert await _votes(runtime) == []
    assert await service.on_reaction(react("2️⃣", user="U3")) is VoteOutcome.RECORDED
    assert await service.on_reaction(react("handshake", user="U4")) is VoteOutcome.RECORDED
    assert await service.on_reaction(react("-1", user="U5")) is VoteOutcome.RECORDED
    assert await service.on_reaction(react("+1", user="U5")) is VoteOutcome.UNKNOWN_EMOJI
    assert sorted(await _votes(runtime)) == sorted(
        [
            (prompt, 0, SECOND_EMOJI, -1.0, 1),
            (prompt, 1, SECOND_EMOJI, 1.0, 1),
            (prompt, 0, "🤝", 0.0, 1),
            (prompt, 1, "🤝", 0.0, 1),
            (prompt, 0, "👎", -1.0, 1),
            (prompt, 1, "👎", -1.0, 1),
        ]
    )
    # One metric series per verdict, whichever name the platform used (`one`, 1️⃣, 1⃣).
    assert await service.on_reaction(react("1\u20e3", user="U6")) is VoteOutcome.RECORDED
    await service.on_reaction_removed(react("1\u20e3", user="U6"))
    series = {
        sample.labels["emoji"]: sample.value
        for family in text_string_to_metric_families(runtime.service.metrics.text().decode())
        if family.name == "thumbtune_votes"
        for sample in family.samples
        if sample.name == "thumbtune_votes_total"
    }
    assert series == {FIRST_EMOJI: 2, SECOND_EMOJI: 1, "🤝": 1, "👎": 1}
    # 👍/👎 approval counts thumbs only; the comparison voters still count as voters.
    [approval] = await runtime.repository.approval_by_version()
    assert (approval.version, approval.answers, approval.up, approval.down, approval.voters) == (0, 2, 0, 0, 3)
    assert await runtime.repository.votes_per_day() == []
    verdicts = await runtime.repository.comparison_votes()
    assert [(v.prompt_id, v.emoji, v.first_version, v.second_version) for v in verdicts] == [
        (prompt, SECOND_EMOJI, 0, 0),
        (prompt, "🤝", 0, 0),
        (prompt, "👎", 0, 0),
    ]


async def test_comparison_votes_become_the_right_pairs(runtime):
    service = runtime.service
    outcomes = {}
    for verdict in ("1️⃣", "2️⃣", "🤝", "👎"):
        reply, key = await _compare(runtime, text=f"compare: question {verdict}", user=f"asker{verdict}")
        react = IncomingReaction(platform="slack", message_key=key, user="U2", emoji=verdict)
        assert await service.on_reaction(react) is VoteOutcome.RECORDED
        outcomes[verdict] = reply.response_ids
    dataset = build_dataset(
        answers=await runtime.repository.feedback_answers(),
        votes=await runtime.repository.all_votes(),
        options=BuildOptions(held_out_fraction=0.0),
    )
    answers = {a.response_id: a for a in await runtime.repository.feedback_answers()}

    def completion(response_id):
        return " " + answers[response_id].text.strip()

    pairs = {(p.chosen, p.rejected) for p in dataset.train_pairs if p.source == "compare"}
    first, second = outcomes["1️⃣"], outcomes["2️⃣"]
    expected = set()
    for chosen, rejected in ((first[0], first[1]), (second[1], second[0])):
        if answers[chosen].text.strip() != answers[rejected].text.strip():  # identical samples are no pair
            expected.add((completion(chosen), completion(rejected)))
    assert pairs == expected
    # A tie is skipped (two ties), both-bad gives two undesirable examples and no pair.
    assert dataset.skipped_ties == 2
    labels = {(e.prompt, e.completion): e.label for e in dataset.train}
    for response_id in outcomes["👎"]:
        answer = answers[response_id]
        assert labels[(answer.context, completion(response_id))] is False


async def test_reconcile_catches_up_on_comparison_reactions(runtime):
    service = runtime.service
    _reply, key = await _compare(runtime)
    await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user="U2", emoji="one"))
    result = await service.reconcile(
        platform="slack", message_key=key, reactions=[("U3", "two"), ("U4", "handshake"), ("U5", "heart")]
    )
    assert (result.added, result.retracted) == (2, 1)
    votes = await _votes(runtime)
    assert sorted((c, e, r) for _, c, e, r, _ in votes) == sorted(
        [(0, SECOND_EMOJI, -1.0), (1, SECOND_EMOJI, 1.0), (0, "🤝", 0.0), (1, "🤝", 0.0)]
    )


async def test_compare_setting_makes_every_answer_a_comparison(settings_env, monkeypatch):
    from bot.app import open_runtime
    from bot.settings import load_settings

    monkeypatch.setenv("THUMBTUNE_COMPARE", "true")
    monkeypatch.setenv("THUMBTUNE_CANDIDATES", "3")  # a comparison still samples just the two it shows
    async with open_runtime(load_settings(), loop=False) as running:
        reply = await running.service.on_prompt(IncomingPrompt(platform="slack", channel="C", user="U", text="hi"))
        assert reply.compare and len(reply.response_ids) == 2


async def test_shell_shows_a_comparison_and_takes_1_2_and_tie(runtime):
    out = io.StringIO()
    chat = ShellChat(runtime.service, stdin=io.StringIO("compare: hello\n1\n=\n/unrate 1️⃣\n+\n"), stdout=out, user="me")
    await chat.serve()
    text = out.getvalue()
    assert "1️⃣ " in text and "2️⃣ " in text and "[v0]" not in text
    assert f"(recorded {FIRST_EMOJI})" in text and "(recorded 🤝)" in text and f"(took back {FIRST_EMOJI})" in text
    assert "(+ is not a rating here" in text or "(👍 is not a rating here" in text
    assert sorted((c, e, r) for _, c, e, r, _ in await _votes(runtime)) == [(0, "🤝", 0.0), (1, "🤝", 0.0)]


async def test_a_verdict_counts_once_against_the_daily_vote_cap(runtime):
    runtime.service.votes.daily_vote_cap = 2
    keys = [(await _compare(runtime, text=f"compare: q{i}", user=f"asker{i}"))[1] for i in range(3)]
    outcomes = [
        await runtime.service.on_reaction(IncomingReaction(platform="slack", message_key=key, user="U9", emoji="one"))
        for key in keys
    ]
    assert outcomes == [VoteOutcome.RECORDED, VoteOutcome.RECORDED, VoteOutcome.CAPPED]
    assert len(await _votes(runtime)) == 4


async def test_migration_0004_upgrades_a_database_with_votes_and_keeps_the_counters(tmp_path):
    from storage.database import Database, migration_files
    from storage.repository import ComparisonRef, NewResponse, Repository

    path = tmp_path / "old.db"
    before = [m for m in migration_files() if m[0] < 4]
    # What the bot before 0004 wrote:
    async with await Database.open(path, migrations=before) as database, database.transaction() as db:
        await db.execute(
            "INSERT INTO prompts (id, platform, channel, author, text, created_at)"
            " VALUES (1, 'slack', 'C', 'a', 'q', 1e9)"
        )
        await db.execute(
            "INSERT INTO responses (id, prompt_id, text, model_version, temperature, top_p,"
            " max_new_tokens, created_at) VALUES (1, 1, 'x', 0, 1, 1, 4, 1e9)"
        )
        await db.execute(
            "INSERT INTO votes (response_id, voter, emoji, reward, created_at) VALUES (1, 'v1', '+1', 1, 1e9)"
        )
    async with await Database.open(path) as database:
        repository = Repository(database)
        assert 4 in await database.applied_migrations()
        [approval] = await repository.approval_by_version()
        assert (approval.up, approval.down, approval.voters) == (1, 0, 1)
        pair = await repository.record_answer(
            platform="slack",
            channel="C",
            author="a",
            text="q2",
            context="User: q2\nBot:",
            mode="compare",
            responses=[NewResponse(text=t, model_version=1, temperature=1, top_p=1, max_new_tokens=4) for t in "yz"],
        )
        first, second = [await stored_response(repository, i) for i in pair.response_ids]
        comparison = ComparisonRef(prompt_id=pair.prompt_id, first=first, second=second)
        await repository.record_comparison(comparison=comparison, voter="v2", emoji="1️⃣", rewards=(1.0, -1.0))
        assert await repository.count_votes_since(0) == 2  # one thumbs vote, one verdict
        assert await repository.count_votes_by("v2", since=0) == 1
        counts = {a.version: (a.answers, a.up, a.down, a.voters) for a in await repository.approval_by_version()}
        assert counts == {0: (1, 1, 0, 1), 1: (2, 0, 0, 1)}
        assert (
            await repository.retract_comparison(comparison=comparison, voter="v2", emoji="1️⃣") is VoteOutcome.RETRACTED
        )
        assert (
            await repository.retract_vote(response_id=1, voter="v1", emoji="👍") is VoteOutcome.RETRACTED
        )  # named so by 0005
        counts = {a.version: (a.answers, a.up, a.down, a.voters) for a in await repository.approval_by_version()}
        assert counts == {0: (1, 0, 0, 0), 1: (2, 0, 0, 0)}
        assert await repository.votes_per_day() == []
