"""THUMBTUNE_COMPARE=auto: comparisons where the serving version's reward model is least sure."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.comparison import AutoComparisons, uncertainty
from bot.events import IncomingPrompt, IncomingReaction, message_key
from storage.repository import VoteOutcome
from tests.helpers import with_ranking_head

if TYPE_CHECKING:
    from bot.app import Runtime


def test_uncertainty_peaks_where_the_head_cannot_tell():
    assert uncertainty(0.0) == pytest.approx(0.25)
    assert uncertainty(3.0) == pytest.approx(uncertainty(-3.0)) and uncertainty(3.0) < 0.05
    assert uncertainty(1e6) == pytest.approx(0.0, abs=1e-12)  # no overflow on a wild score


def test_only_the_least_sure_prompts_are_compared_and_never_above_the_share():
    rng = random.Random(0)
    auto = AutoComparisons(0.2, window=100, warmup=20, rng=random.Random(1))
    sure, unsure_chosen, unsure_seen = 0, 0, 0
    asked_in_window: list[bool] = []
    for index in range(600):
        unsure = rng.random() < 0.3  # more unsure prompts than the share can take
        if unsure:  # two candidates the head cannot tell apart, two it is sure of
            scores = [5.0, rng.uniform(-0.3, 0.3), -6.0, rng.uniform(-0.3, 0.3)]
        else:
            scores = [rng.uniform(3, 6), rng.uniform(3, 6), rng.uniform(-6, -3), rng.uniform(-6, -3)]
        pair = auto.choose(scores)
        asked_in_window = [*asked_in_window, pair is not None][-100:]
        assert sum(asked_in_window) <= 20  # at most the share of any window of prompts
        if index < 20:
            continue  # the warm-up asks at random
        unsure_seen += unsure
        if pair is not None:
            if unsure:
                unsure_chosen += 1
                assert pair == (1, 3)  # the two it is least sure of, not the sure ones
            else:
                sure += 1
    # It spends most of its share, on unsure prompts only.
    assert unsure_chosen >= 0.8 * 0.2 * 580 and unsure_chosen < unsure_seen and sure == 0


def test_without_scores_it_asks_at_random_at_the_share():
    auto = AutoComparisons(0.3, rng=random.Random(0))
    asked = [auto.at_random() for _ in range(2000)]
    assert 0.25 < sum(asked) / len(asked) <= 0.3
    assert not any(AutoComparisons(0.0).at_random() for _ in range(50))
    assert AutoComparisons(0.5).choose([1.0]) is None  # one candidate: nothing to compare
    with pytest.raises(ValueError, match="share"):
        AutoComparisons(1.5)


def test_compare_setting_takes_auto_and_the_old_switch(settings_env, monkeypatch):
    from bot.settings import load_settings

    for given, mode in (("true", "on"), ("FALSE", "off"), ("1", "on"), ("auto", "auto"), ("on", "on")):
        monkeypatch.setenv("THUMBTUNE_COMPARE", given)
        assert load_settings().compare == mode
    monkeypatch.setenv("THUMBTUNE_COMPARE", "sometimes")
    with pytest.raises(Exception, match="THUMBTUNE_COMPARE: Input should be 'off', 'on' or 'auto'"):
        load_settings()
    monkeypatch.setenv("THUMBTUNE_COMPARE", "auto")
    monkeypatch.setenv("THUMBTUNE_COMPARE_SHARE", "2")
    with pytest.raises(Exception, match="THUMBTUNE_COMPARE_SHARE"):
        load_settings()


def _comparisons(runtime: Runtime) -> dict[str, float]:
    text = generate_latest(runtime.service.answers.metrics.registry).decode()
    return {
        sample.labels["why"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "thumbtune_comparisons"
        for sample in family.samples
        if sample.name == "thumbtune_comparisons_total"
    }


async def test_auto_shows_at_most_its_share_as_scored_comparisons_judged_like_any(
    tiny_model_dir: Path, tmp_path: Path, settings_env, monkeypatch
):
    from bot.app import open_runtime
    from bot.settings import load_settings

    folder, _head = with_ranking_head(tiny_model_dir, tmp_path / "with-reward")
    monkeypatch.setenv("THUMBTUNE_MODEL", str(folder))
    monkeypatch.setenv("THUMBTUNE_BEST_OF", "4")
    monkeypatch.setenv("THUMBTUNE_COMPARE", "auto")
    monkeypatch.setenv("THUMBTUNE_COMPARE_SHARE", "0.25")
    monkeypatch.setenv("THUMBTUNE_PROMPTS_PER_MINUTE", "0")
    async with open_runtime(load_settings(), loop=False) as running:
        auto = running.service.answers.auto_compare
        assert auto is not None
        auto.rng = random.Random(0)
        replies = []
        for i in range(48):
            reply = await running.service.on_prompt(
                IncomingPrompt(platform="slack", channel="C", user=f"U{i % 5}", text=f"tell me about day {i}")
            )
            assert reply is not None and reply.ok
            replies.append(reply)
        compared = [reply for reply in replies if reply.compare]
        assert 1 <= len(compared) <= 12  # at most a quarter of the answers
        assert _comparisons(running) == {"unsure": len(compared)}
        # A verdict on one is a comparison like any other: one vote on each side.
        key = message_key("slack", "C", "auto.1")
        await running.service.answer_posted(compared[0].response_ids[0], key)
        outcome = await running.service.on_reaction(
            IncomingReaction(platform="slack", message_key=key, user="U9", emoji="two")
        )
        assert outcome is VoteOutcome.RECORDED
    with sqlite3.connect(running.settings.db_path) as db:
        modes = db.execute(
            "SELECT p.mode, COUNT(*), SUM(r.score IS NULL) FROM prompts p JOIN responses r ON r.prompt_id = p.id"
            " GROUP BY p.id"
        ).fetchall()
        votes = db.execute(
            "SELECT r.candidate, v.reward FROM votes v JOIN responses r ON r.id = v.response_id ORDER BY r.candidate"
        ).fetchall()
    # A comparison stores exactly its two sides (scored); a single answer all four ranked candidates.
    assert sorted({(mode, count, unscored) for mode, count, unscored in modes}) == [("compare", 2, 0), ("single", 4, 0)]
    assert [mode for mode, _, _ in modes].count("compare") == len(compared)
    assert votes == [(0, -1.0), (1, 1.0)]


async def test_auto_without_a_reward_model_compares_at_random(runtime: Runtime) -> None:
    from bot.comparison import AutoComparisons

    runtime.service.answers.auto_compare = AutoComparisons(0.5, rng=random.Random(3))
    runtime.service.answers.rate_limiter = None  # one person asking fast
    replies = [
        await runtime.service.on_prompt(IncomingPrompt(platform="slack", channel="C", user="U", text=f"q {i}"))
        for i in range(12)
    ]
    assert all(reply is not None and reply.ok for reply in replies)
    compared = [reply for reply in replies if reply.compare]
    assert 2 <= len(compared) <= 6 and all(len(reply.response_ids) == 2 for reply in compared)
    assert all(len(reply.response_ids) == 1 for reply in replies if not reply.compare)
    assert _comparisons(runtime) == {"random": len(compared)}
