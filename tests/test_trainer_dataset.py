"""Votes -> examples on small worked examples, and the storage reads behind them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from storage.database import Database
from storage.dialogue import render_prompt
from storage.repository import CorrectionRow, FeedbackAnswer, NewResponse, Repository, VoteRow
from trainer.dataset import (
    BuildOptions,
    balanced_weights,
    build_dataset,
    credited_rewards,
    dpo_records,
    group_id,
    is_held_out,
    kto_records,
    readiness,
    sft_records,
)

NO_SPLIT = BuildOptions(held_out_fraction=0.0)


def answer(
    rid: int,
    *,
    prompt: int | None = None,
    text: str = "",
    candidate: int = 0,
    conversation: str | None = None,
    flagged: bool = False,
    author: str = "asker",
    at: float | None = None,
) -> FeedbackAnswer:
    prompt = rid if prompt is None else prompt
    return FeedbackAnswer(
        response_id=rid,
        prompt_id=prompt,
        candidate=candidate,
        conversation=conversation,
        context=render_prompt(f"question {prompt}"),
        prompt_text=f"question {prompt}",
        author=author,
        text=text or f"answer {rid}",
        model_version=0,
        flagged=flagged,
        prompt_created_at=float(prompt if at is None else at),
    )


def vote(rid: int, reward: float, voter: str = "v1", vid: int = 0) -> VoteRow:
    return VoteRow(vid, rid, rid, voter, "👍" if reward > 0 else "👎", reward, 0, 0.0)


def test_net_reward_sign_gives_the_label_and_ties_are_skipped() -> None:
    answers = [answer(1), answer(2), answer(3), answer(4)]
    votes = [
        vote(1, 1.0, "a"),
        vote(1, 1.0, "b"),
        vote(1, -1.0, "c"),  # +1: desirable
        vote(2, -1.0, "a"),  # -1: undesirable
        vote(3, 1.0, "a"),
        vote(3, -1.0, "b"),  # tie: skipped
    ]  # 4 has no votes: skipped
    data = build_dataset(answers=answers, votes=votes, options=NO_SPLIT)
    assert [(e.completion, e.label) for e in data.train] == [(" answer 1", True), (" answer 2", False)]
    assert data.skipped_ties == 1
    assert data.train[0].prompt == "User: question 1\nBot:"
    assert data.train[0].reward == 1.0


def test_flagged_answers_and_forgotten_people_are_left_out() -> None:
    answers = [answer(1, flagged=True), answer(2, author="gone"), answer(3), answer(4)]
    votes = [vote(1, 1.0), vote(2, 1.0), vote(3, 1.0, "gone"), vote(3, -1.0, "kept"), vote(4, 1.0)]
    data = build_dataset(
        answers=answers, votes=votes, options=BuildOptions(held_out_fraction=0.0, forgotten=frozenset({"gone"}))
    )
    # 1 flagged, 2 asked by a forgotten person, 3 keeps only the remaining person's vote.
    assert [(e.completion, e.label) for e in data.train] == [(" answer 3", False), (" answer 4", True)]
    assert data.excluded == 2


def test_corrections_give_pairs_and_both_labels() -> None:
    answers = [answer(1, text="Bad answer")]
    corrections = [CorrectionRow(1, 1, "fixer", "A much  better answer", 0.0)]
    data = build_dataset(answers=answers, votes=[vote(1, -1.0)], corrections=corrections, options=NO_SPLIT)
    assert [(p.chosen, p.rejected, p.source) for p in data.train_pairs] == [
        (" A much better answer", " Bad answer", "correction")
    ]
    # The disliked answer appears once; the correction is added as desirable.
    assert sorted((e.completion, e.label) for e in data.train) == [
        (" A much better answer", True),
        (" Bad answer", False),
    ]


def test_compare_votes_pair_the_best_and_worst_candidate() -> None:
    answers = [
        answer(1, prompt=7, candidate=0, text="first"),
        answer(2, prompt=7, candidate=1, text="second"),
        answer(3, prompt=7, candidate=2, text="third"),
    ]
    data = build_dataset(answers=answers, votes=[vote(1, -1.0), vote(2, 1.0)], options=NO_SPLIT)
    assert [(p.chosen, p.rejected, p.source) for p in data.train_pairs] == [(" second", " first", "compare")]
    assert dpo_records(data.train_pairs) == [
        {"prompt": "User: question 7\nBot:", "chosen": " second", "rejected": " first"}
    ]


def test_thread_credit_discounts_later_rewards_back_to_earlier_turns() -> None:
    answers = [answer(1, conversation="t"), answer(2, conversation="t"), answer(3, conversation="t"), answer(4)]
    rewards = {3: 1.0, 4: -1.0}
    assert credited_rewards(answers, rewards, gamma=0.0) == {1: 0.0, 2: 0.0, 3: 1.0, 4: -1.0}
    credited = credited_rewards(answers, rewards, gamma=0.5)
    assert credited == {1: 0.25, 2: 0.5, 3: 1.0, 4: -1.0}
    data = build_dataset(
        answers=answers, votes=[vote(3, 1.0), vote(4, -1.0)], options=BuildOptions(gamma=0.5, held_out_fraction=0.0)
    )
    assert sorted((e.completion, e.label, e.reward) for e in data.train) == [
        (" answer 1", True, 0.25),
        (" answer 2", True, 0.5),
        (" answer 3", True, 1.0),
        (" answer 4", False, -1.0),
    ]


def test_split_is_stable_and_keeps_a_conversation_together() -> None:
    answers = [answer(i, conversation=f"c{i % 30}") for i in range(1, 301)]
    votes = [vote(i, 1.0 if i % 2 else -1.0) for i in range(1, 301)]
    options = BuildOptions(held_out_fraction=0.3)
    first = build_dataset(answers=answers, votes=votes, options=options)
    again = build_dataset(answers=answers, votes=votes, options=options)
    assert first == again
    assert first.held_out and first.train
    assert {e.group for e in first.train} <= {group_id(f"c:c{n}") for n in range(30)}  # split by conversation
    assert not {e.group for e in first.held_out} & {e.group for e in first.train}
    assert is_held_out("c:x", fraction=0.0, salt="s") is False


def test_a_single_long_conversation_still_holds_answers_out() -> None:
    # The shell chat is one conversation until /new: split by conversation, nothing would be held out.
    answers = [answer(i, conversation="shell:one") for i in range(1, 61)]
    votes = [vote(i, 1.0 if i % 3 else -1.0) for i in range(1, 61)]
    data = build_dataset(answers=answers, votes=votes, options=BuildOptions(held_out_fraction=0.2))
    assert data.train and data.held_out and len(data.held_out) < len(data.train)
    assert {e.group for e in data.held_out} <= {group_id(f"q:question {i}") for i in range(1, 61)}  # by question
    by_conversation = build_dataset(
        answers=answers, votes=votes, options=BuildOptions(held_out_fraction=0.2, min_split_groups=1)
    )
    assert len(by_conversation.held_out) in (0, 60)  # all on one side: what the fallback avoids


def test_a_question_asked_again_stays_on_one_side_of_the_split() -> None:
    # 40 questions, each asked 5 times in lone prompts (different prompt ids, spacing and case):
    # a held-out question is never also answered in training.
    answers = []
    for rid in range(1, 201):
        a = answer(rid)
        question = f"Question  {rid % 40}" if rid % 2 else f"question {rid % 40}"
        answers.append(dataclasses.replace(a, prompt_text=question, context=render_prompt(question)))
    votes = [vote(i, 1.0 if i % 3 else -1.0) for i in range(1, 201)]
    data = build_dataset(answers=answers, votes=votes, options=BuildOptions(held_out_fraction=0.3))
    assert data.train and data.held_out

    def asked(examples) -> set[str]:
        return {" ".join(e.prompt.casefold().split()) for e in examples}

    assert not asked(data.held_out) & asked(data.train)
    assert len(data.held_out) % 5 == 0  # whole questions, all five askings of each


def test_readiness_needs_enough_examples_with_both_labels() -> None:
    one_sided = build_dataset(
        answers=[answer(i) for i in range(1, 11)], votes=[vote(i, 1.0) for i in range(1, 11)], options=NO_SPLIT
    )
    assert readiness(one_sided, min_examples=4) == "no undesirable (disliked) training examples"
    assert readiness(one_sided, min_examples=20) == "only 10 training examples, need at least 20"
    mixed = build_dataset(answers=[answer(1), answer(2)], votes=[vote(1, 1.0), vote(2, -1.0)], options=NO_SPLIT)
    assert readiness(mixed, min_examples=2) is None


def test_balanced_weights_scale_the_rarer_label() -> None:
    assert balanced_weights(desirable=10, undesirable=10) == (1.0, 1.0)
    assert balanced_weights(desirable=4, undesirable=12) == (3.0, 1.0)
    assert balanced_weights(desirable=12, undesirable=4) == (1.0, 3.0)


def test_record_shapes_match_trl() -> None:
    answers = [answer(1, text="good"), answer(2, text="bad")]
    corrections = [CorrectionRow(1, 2, "fixer", "better", 0.0)]
    data = build_dataset(
        answers=answers, votes=[vote(1, 1.0), vote(2, -1.0)], corrections=corrections, options=NO_SPLIT
    )
    assert {tuple(sorted(r)) for r in kto_records(data.train)} == {("completion", "label", "prompt")}
    assert sorted(r["completion"] for r in sft_records(data.train, data.train_pairs)) == [" better", " good"]


async def test_storage_reads_follow_retractions_and_conversations(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "t.db") as database:
        repo = Repository(database)
        lone = await repo.record_answer(
            platform="shell",
            channel="c",
            author="a",
            text="q1",
            context=render_prompt("q1"),
            responses=[_response("r1")],
        )
        first = await repo.record_answer(
            platform="shell",
            channel="c",
            author="a",
            text="q2",
            context=render_prompt("q2"),
            conversation="thread",
            responses=[_response("r2")],
        )
        later = await repo.record_answer(
            platform="shell",
            channel="c",
            author="a",
            text="q3",
            context="ctx3",
            conversation="thread",
            responses=[_response("r3")],
        )
        unrated = await repo.record_answer(
            platform="shell", channel="c", author="a", text="q4", context="", responses=[_response("r4")]
        )
        await repo.record_vote(response_id=lone.response_ids[0], voter="v", emoji="👍", reward=1.0)
        await repo.record_vote(response_id=lone.response_ids[0], voter="w", emoji="👍", reward=1.0)
        await repo.retract_vote(response_id=lone.response_ids[0], voter="w", emoji="👍")
        await repo.record_vote(response_id=later.response_ids[0], voter="v", emoji="👎", reward=-1.0)
        await repo.record_correction(response_id=later.response_ids[0], author="v", text="fixed")

        answers = await repo.feedback_answers()
        # The unrated lone answer is not read; the unrated earlier turn of a rated thread is.
        assert [a.text for a in answers] == ["r1", "r2", "r3"]
        assert unrated.response_ids[0] not in {a.response_id for a in answers}
        assert answers[2].context == "ctx3" and answers[2].conversation == "thread"
        votes = await repo.all_votes()
        assert [(v.response_id, v.reward) for v in votes] == [
            (lone.response_ids[0], 1.0),
            (later.response_ids[0], -1.0),
        ]
        assert [c.text for c in await repo.corrections()] == ["fixed"]

        data = build_dataset(
            answers=answers,
            votes=votes,
            corrections=await repo.corrections(),
            options=BuildOptions(gamma=0.9, held_out_fraction=0.0),
        )
        labels = {e.completion: e.label for e in data.train}
        assert labels == {" r1": True, " r2": False, " r3": False, " fixed": True}
        assert first.prompt_id != later.prompt_id

        run_id = await repo.start_training_run(parent_version=0)
        await repo.finish_training_run(
            run_id, status="skipped", reason="too few", examples=3, desirable=1, undesirable=2, held_out=0
        )
        runs = await repo.training_runs()
        assert (runs[0].status, runs[0].reason, runs[0].examples) == ("skipped", "too few", 3)
        async with database.reading() as db:
            row = await (await db.execute("SELECT desirable, undesirable, held_out FROM training_runs")).fetchone()
        assert tuple(row) == (1, 2, 0)


def _response(text: str) -> NewResponse:
    return NewResponse(text=text, model_version=0, temperature=0.9, top_p=0.95, max_new_tokens=24)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_split_extremes(fraction: float) -> None:
    assert is_held_out("c:any", fraction=fraction, salt="s") is (fraction == 1.0)


async def test_a_run_learns_from_votes_since_its_parent_went_live(tmp_path: Path) -> None:
    from bot.snapshots import collect
    from trainer.config import DataConfig

    async with await Database.open(tmp_path / "t.db") as database:
        repo = Repository(database)

        async def rated(text: str, reward: float) -> int:
            stored = await repo.record_answer(
                platform="shell",
                channel="c",
                author="a",
                text=text,
                context=render_prompt(text),
                responses=[_response(text)],
            )
            await repo.record_vote(response_id=stored.response_ids[0], voter="v", emoji="x", reward=reward)
            return stored.response_ids[0]

        old = await rated("old", 1.0)
        await repo.record_correction(response_id=old, author="v", text="old fix")
        await repo.record_model_version(1, source="models/versions/0001", parent=0)  # version 1 goes live
        new = await rated("new", -1.0)
        await repo.record_correction(response_id=new, author="v", text="new fix")

        since = await collect(repo, DataConfig(held_out_fraction=0.0, all_history=False), parent=1)
        assert sorted((e.completion, e.label) for e in since.train) == [(" new", False), (" new fix", True)]
        everything = await collect(repo, DataConfig(held_out_fraction=0.0), parent=1)  # the default
        assert sorted(e.completion for e in everything.train) == [" new", " new fix", " old", " old fix"]


def test_unshown_best_of_candidates_make_no_pairs_with_the_shown_one() -> None:
    # Best-of-4: only candidate 0 was shown and voted; the other three have no votes, which
    # says nothing about them (a 0 is not worse than a 👍).
    answers = [answer(i + 1, prompt=9, candidate=i, text=f"candidate {i}") for i in range(4)]
    data = build_dataset(answers=answers, votes=[vote(1, 1.0)], options=NO_SPLIT)
    assert data.train_pairs == ()
    assert [(e.completion, e.label) for e in data.train] == [(" candidate 0", True)]


def test_held_out_answers_said_word_for_word_in_training_are_left_out() -> None:
    # 40 conversations asking one question and getting one of two answers: a small model repeats itself.
    answers = [
        answer(i, prompt=0, text="same liked" if i % 2 else "same disliked", conversation=f"c{i}") for i in range(40)
    ]
    answers += [answer(100, prompt=0, text="a new answer", conversation="c100")]
    votes = [vote(i, 1.0 if i % 2 else -1.0) for i in range(40)] + [vote(100, 1.0)]
    data = build_dataset(answers=answers, votes=votes, options=BuildOptions(held_out_fraction=0.5))
    trained = {(e.prompt, e.completion) for e in data.train}
    assert data.train and not any((e.prompt, e.completion) in trained for e in data.held_out)
    assert len(data.train) + len(data.held_out) < 41  # some held-out repeats were dropped
