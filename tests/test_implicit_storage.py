"""Implicit signals on a real SQLite file and a real PostgreSQL server (each test runs on
both): stored once, linked to the answer and its version, never counted as a vote, forgotten
with their author, their reply texts blanked by retention."""

from __future__ import annotations

import pytest

from storage.database import Database, migration_files
from storage.repository import NewResponse, Repository, VoteOutcome


@pytest.fixture
async def repository(database_target):
    database = await Database.open(database_target)
    yield Repository(database)
    await database.close()


async def _answer(repository: Repository, *, author: str = "asker", version: int = 3, conversation: str | None = "c1"):
    stored = await repository.record_answer(
        platform="shell",
        channel="local",
        author=author,
        text="what is a haiku",
        context="User: what is a haiku\nBot:",
        conversation=conversation,
        responses=[NewResponse(text="a poem", model_version=version, temperature=0.9, top_p=0.95, max_new_tokens=24)],
    )
    return stored.response_ids[0]


def test_both_dialects_ship_the_signals_migration():
    sqlite = {name for _, name, _ in migration_files()}
    postgres = {name for _, name, _ in migration_files("postgresql")}
    assert "0012_implicit_signals.sql" in sqlite & postgres


async def test_a_signal_is_stored_once_linked_to_its_answer_and_version(repository: Repository):
    answer = await _answer(repository)
    first = await repository.record_signal(
        response_id=answer, person="asker", kind="reply_positive", value=0.8, text="thanks!", event=("shell", "m1")
    )
    assert first is VoteOutcome.RECORDED
    # The same event again (a platform's retry), and the same signal from another event.
    assert (
        await repository.record_signal(
            response_id=answer, person="asker", kind="reply_positive", value=0.8, event=("shell", "m1")
        )
        is VoteOutcome.DUPLICATE_EVENT
    )
    again = await repository.record_signal(response_id=answer, person="asker", kind="reply_positive", value=0.8)
    assert again is VoteOutcome.ALREADY_RECORDED
    # One reply verdict per person and answer: a later complaint is the conversation going on.
    later = await repository.record_signal(response_id=answer, person="asker", kind="reply_negative", value=-0.5)
    assert later is VoteOutcome.ALREADY_RECORDED
    (signal,) = await repository.all_signals()
    assert (signal.response_id, signal.kind, signal.value, signal.model_version) == (answer, "reply_positive", 0.8, 3)
    assert signal.person == "asker"
    # Not a vote: no vote rows, no approval counted.
    assert await repository.all_votes() == []
    assert await repository.count_votes_since(0) == 0


async def test_a_retry_keeps_the_new_answer_and_unknown_answers_or_kinds_are_refused(repository: Repository):
    first, second = await _answer(repository), await _answer(repository)
    outcome = await repository.record_signal(
        response_id=first, person="asker", kind="retry", value=-1.0, better_response_id=second
    )
    assert outcome is VoteOutcome.RECORDED
    assert [(s.kind, s.better_response_id) for s in await repository.signals_on(first)] == [("retry", second)]
    unknown = await repository.record_signal(response_id=9999, person="asker", kind="rephrase", value=-1.0)
    assert unknown is VoteOutcome.UNKNOWN_RESPONSE
    with pytest.raises(ValueError, match="unknown signal kind"):
        await repository.record_signal(response_id=first, person="asker", kind="👍", value=1.0)


async def test_forget_me_deletes_a_persons_signals_and_they_are_not_read_again(repository: Repository):
    theirs, others = await _answer(repository, author="me"), await _answer(repository, author="other")
    await repository.record_signal(response_id=theirs, person="me", kind="reply_negative", value=-0.6, text="wrong")
    await repository.record_signal(response_id=others, person="other", kind="rephrase", value=-1.0)
    counts = await repository.forget_person("me")
    assert counts.signals == 1
    assert [s.person for s in await repository.all_signals()] == ["other"]
    async with repository.database.reading() as db:
        cursor = await db.execute("SELECT count(*) FROM implicit_signals WHERE text = 'wrong'")
        assert (await cursor.fetchone())[0] == 0
    # The forgotten person's old answer is gone; a signal on another's answer from before the forget is refused.
    late = await repository.record_signal(response_id=others, person="me", kind="reply_positive", value=0.5)
    assert late is VoteOutcome.FORGOTTEN


async def test_retention_blanks_reply_texts_and_keeps_the_signal(repository: Repository):
    import time

    answer = await _answer(repository)
    await repository.record_signal(response_id=answer, person="asker", kind="reply_negative", value=-0.7, text="nope")
    await repository.purge_texts_before(time.time() + 1)
    async with repository.database.reading() as db:
        cursor = await db.execute("SELECT text, value FROM implicit_signals")
        assert [tuple(row) for row in await cursor.fetchall()] == [("", -0.7)]


async def test_the_answer_shown_before_is_found_by_conversation_then_by_channel(repository: Repository):
    import time

    first = await _answer(repository, conversation="c1")
    second = await _answer(repository, conversation="c1")
    await _answer(repository, author="someone else", conversation="c1")
    shown = await repository.answer_shown_before(
        author="asker", conversation="c1", platform="shell", channel="local", since=0.0
    )
    assert shown is not None and shown.response_id == second and shown.prompt_text == "what is a haiku"
    # Another conversation in the same channel: the channel's newest answer, only when recent.
    recent = await repository.answer_shown_before(
        author="asker", conversation="c9", platform="shell", channel="local", since=time.time() - 60
    )
    assert recent is not None and recent.response_id == second
    assert (
        await repository.answer_shown_before(
            author="asker", conversation="c9", platform="shell", channel="local", since=time.time() + 60
        )
        is None
    )
    assert first < second


async def test_the_agreement_now_reads_only_the_votes_on_signalled_answers(repository: Repository):
    from bot.agreement import current
    from trainer.dataset import signal_weights

    answers = [await _answer(repository) for _ in range(4)]
    for answer, emoji, reward in zip(answers, ("👍", "👎", "👎", "👍"), (1.0, -1.0, -1.0, 1.0), strict=True):
        await repository.record_vote(response_id=answer, voter="voter", emoji=emoji, reward=reward)
    await repository.record_signal(response_id=answers[0], person="asker", kind="reply_positive", value=0.9)
    await repository.record_signal(response_id=answers[1], person="asker", kind="rephrase", value=-1.0)
    await repository.record_signal(response_id=answers[2], person="asker", kind="rephrase", value=-1.0)
    assert {v.response_id for v in await repository.votes_on_signalled_answers()} == set(answers[:3])
    now = {agreement.kind: agreement for agreement in await current(repository)}
    assert now == signal_weights(await repository.all_signals(), await repository.all_votes())
    assert (now["rephrase"].answers, now["rephrase"].agreed, now["reply_positive"].agreed) == (2, 2, 1)


# --- training: weights learned from the answers that also have votes ---------------------
def _signal(response_id: int, kind: str, value: float, *, better: int | None = None, person: str = "p"):
    from storage.repository import SignalRow

    return SignalRow(0, response_id, response_id, person, kind, value, better, 0, 0.0)


def _vote(response_id: int, reward: float, voter: str = "v"):
    from storage.repository import VoteRow

    return VoteRow(0, response_id, response_id, voter, "👍" if reward > 0 else "👎", reward, 0, 0.0)


def test_signal_weights_follow_agreement_with_votes_and_default_without_any():
    from trainer.dataset import DEFAULT_SIGNAL_WEIGHT, PRIOR_ANSWERS, signal_weights

    # 10 answers with votes: thanks agree on all 10, rephrasings on 5 of 10 (chance).
    signals = [_signal(i, "reply_positive", 0.8) for i in range(10)]
    signals += [_signal(100 + i, "rephrase", -1.0) for i in range(10)]
    votes = [_vote(i, 1.0) for i in range(10)] + [_vote(100 + i, 1.0 if i < 5 else -1.0) for i in range(10)]
    weights = signal_weights(signals, votes)
    assert (weights["reply_positive"].answers, weights["reply_positive"].agreed) == (10, 10)
    assert weights["reply_positive"].weight == round((10 * 1.0 + PRIOR_ANSWERS * DEFAULT_SIGNAL_WEIGHT) / 20, 4)
    assert weights["rephrase"].rate == 0.5 and weights["rephrase"].weight == DEFAULT_SIGNAL_WEIGHT / 2
    # Nothing to calibrate on: the conservative default.
    assert weights["retry"].answers == 0 and weights["retry"].weight == DEFAULT_SIGNAL_WEIGHT
    assert all(weight.used for weight in weights.values())
    # Wrong on 30 of 30 answers: a weight of 0.075, under the least a kind needs to be used.
    against = signal_weights(
        [_signal(i, "reply_negative", -1.0) for i in range(30)], [_vote(i, 1.0) for i in range(30)]
    )
    assert against["reply_negative"].weight == 0.075 and not against["reply_negative"].used


def test_implicit_signals_label_unvoted_answers_and_a_retry_is_a_pair(tmp_path):
    from storage.repository import FeedbackAnswer
    from trainer.dataset import BuildOptions, build_dataset

    def answer(response_id: int, text: str, question: str = "what is a haiku") -> FeedbackAnswer:
        return FeedbackAnswer(
            response_id, response_id, 0, None, "", question, "asker", text, 0, False, float(response_id)
        )

    answers = [answer(1, "a poem"), answer(2, "a short poem"), answer(3, "volcanoes", "why is the sky blue")]
    signals = [
        _signal(1, "retry", -1.0, better=2),
        _signal(3, "reply_negative", -1.0),
    ]
    dataset = build_dataset(answers=answers, votes=[], signals=signals, options=BuildOptions(held_out_fraction=0.0))
    labels = {(e.completion.strip(), e.label) for e in dataset.train}
    assert labels == {("a poem", False), ("a short poem", True), ("volcanoes", False)}
    assert [(p.chosen.strip(), p.rejected.strip(), p.source) for p in dataset.train_pairs] == [
        ("a short poem", "a poem", "retry")
    ]
    assert dataset.implicit_examples == 3
    # The dataset keeps the weights it gave each kind (a run's record shows them: bot.agreement).
    assert [(w.kind, w.answers, w.weight, w.used) for w in dataset.implicit_weights] == [
        ("reply_positive", 0, 0.3, True),
        ("reply_negative", 0, 0.3, True),
        ("retry", 0, 0.3, True),
        ("rephrase", 0, 0.3, True),
    ]
    # Off (no signals): nothing to learn from, and no weights to show.
    off = build_dataset(answers=answers, votes=[], options=BuildOptions(held_out_fraction=0.0))
    assert off.train == () and off.implicit_weights == ()
    # A vote outweighs a disagreeing implicit signal.
    voted = build_dataset(
        answers=answers, votes=[_vote(3, 1.0)], signals=signals, options=BuildOptions(held_out_fraction=0.0)
    )
    assert ("volcanoes", True) in {(e.completion.strip(), e.label) for e in voted.train}
