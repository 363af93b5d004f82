"""The reward model: fitted on votes by the trainer, kept with the version, ranking best-of-n answers."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import torch

from bot.answers import EMPTY_ANSWER
from bot.events import IncomingPrompt
from storage.dialogue import render_prompt
from storage.reward import FILE, RewardHead, answer_features
from tests.helpers import reward_examples as _examples
from tests.helpers import with_ranking_head
from trainer.models import load_causal_lm
from trainer.reward import fit_logistic, fit_reward


def test_the_logistic_fit_separates_a_rare_label_and_is_penalised():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] > 1.2).astype(float)  # about 12 % positives
    weight, bias = fit_logistic(x, y)
    predicted = (x @ weight + bias) > 0
    recall = predicted[y == 1].mean()
    assert recall > 0.9 and abs(weight[0]) == max(abs(weight))  # balanced: the rare label is found
    weaker, _ = fit_logistic(x, y, l2=100.0)
    assert np.linalg.norm(weaker) < np.linalg.norm(weight)


def test_a_reward_head_learns_votes_and_survives_a_round_trip(tiny_model_dir: Path, tmp_path: Path, caplog):
    model, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    head = fit_reward(model, tokenizer, _examples(40), _examples(20, offset=40), min_examples=5, samples=200, seed=0)
    assert head is not None and head.examples == 40
    assert head.auc is not None and head.auc > 0.9, head.auc
    low, high = head.auc_interval or (0.0, 0.0)
    assert low <= head.auc <= high
    head.save(tmp_path)
    again = RewardHead.load(tmp_path)
    assert again is not None and again.auc == head.auc
    features = answer_features(model, tokenizer, [(e.prompt, e.completion) for e in _examples(4, offset=100)])
    assert np.allclose(again.score(features), head.score(features))
    assert RewardHead.load(tmp_path / "nowhere") is None
    (tmp_path / FILE).write_text('{"format": 1, "weight": [1, 2]}')
    with caplog.at_level(logging.WARNING):
        assert RewardHead.load(tmp_path) is None
    assert "cannot be read" in caplog.text
    # One label only: nothing to learn, no head.
    only_liked = [e for e in _examples(10) if e.label]
    assert fit_reward(model, tokenizer, only_liked, [], min_examples=5, samples=10, seed=0) is None


async def test_best_of_shows_the_candidate_the_reward_model_prefers_and_stores_all(
    tiny_model_dir: Path, tmp_path: Path, settings_env, monkeypatch
):
    from bot.app import open_runtime
    from bot.settings import load_settings

    folder, head = with_ranking_head(tiny_model_dir, tmp_path / "with-reward")
    model, tokenizer = load_causal_lm(folder, device=torch.device("cpu"))
    monkeypatch.setenv("THUMBTUNE_MODEL", str(folder))
    monkeypatch.setenv("THUMBTUNE_BEST_OF", "4")
    async with open_runtime(load_settings()) as runtime:
        reply = await runtime.service.on_prompt(IncomingPrompt(platform="shell", channel="c", user="u", text="hello"))
        compared = await runtime.service.on_prompt(
            IncomingPrompt(platform="shell", channel="c", user="u", text="compare: hello")
        )
    assert reply is not None and reply.ok and len(reply.response_ids) == 4
    with sqlite3.connect(runtime.settings.db_path) as db:
        # A comparison's sides are not ranked: the reward model's favourite would always be 1️⃣.
        sides = db.execute(
            "SELECT score FROM responses WHERE prompt_id = (SELECT MAX(id) FROM prompts) ORDER BY candidate"
        ).fetchall()
    assert compared is not None and compared.compare and sides == [(None,), (None,)]
    with sqlite3.connect(runtime.settings.db_path) as db:
        rows = db.execute(
            "SELECT candidate, text, score FROM responses WHERE prompt_id = (SELECT MAX(id) - 1 FROM prompts)"
            " ORDER BY candidate"
        ).fetchall()
    scores = [row[2] for row in rows]
    assert len(rows) == 4 and None not in scores
    assert scores == sorted(scores, reverse=True)  # best first: candidate 0 is the one shown
    assert reply.text == (rows[0][1] or EMPTY_ANSWER)
    # The scores are the head's own on those answers.
    features = answer_features(model, tokenizer, [(render_prompt("hello"), row[1]) for row in rows])
    assert np.allclose(head.score(features), scores, atol=1e-3)


def test_without_a_reward_model_nothing_is_ranked(tiny_model_dir: Path):
    from bot.generation import SamplingParams, load_model
    from bot.generation.decoding import sample

    loaded = load_model(tiny_model_dir, version=0, device="cpu")
    assert loaded.reward is None
    torch.manual_seed(0)
    [result] = sample(loaded, [render_prompt("hello")], SamplingParams(max_new_tokens=8), [3])
    assert len(result.texts) == 3 and result.scores is None


def test_features_cover_only_the_answer(tiny_model_dir: Path):
    model, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    prompt = render_prompt("hello")
    same_answer = answer_features(model, tokenizer, [(prompt, " Hi there."), (prompt, " Hi there.")])
    other_answer = answer_features(model, tokenizer, [(prompt, " Pizza, always pizza.")])
    assert np.allclose(same_answer[0], same_answer[1], atol=1e-5)
    assert not np.allclose(same_answer[0], other_answer[0], atol=1e-3)


async def test_under_a_version_without_a_reward_model_best_of_samples_one_answer(runtime):
    assert runtime.settings.best_of == 4  # the default
    assert not runtime.generator.ranks_candidates  # version 0: no reward model
    reply = await runtime.service.on_prompt(IncomingPrompt(platform="shell", channel="c", user="u", text="hello"))
    assert reply is not None and reply.ok and len(reply.response_ids) == 1  # no wasted samples


def test_a_reward_head_without_held_out_evidence_does_not_rank(tiny_model_dir: Path, tmp_path: Path, caplog):
    """No AUC (too few held-out votes), or an AUC interval that includes 0.5: best-of-n would
    trade variety for the head's noise, so the bot samples one answer, and says why."""
    from bot.generation import load_model
    from storage.registry import ModelRegistry, format_versions

    model, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    unsure = fit_reward(model, tokenizer, _examples(40), [], min_examples=5, samples=10, seed=0)
    assert unsure is not None and unsure.auc is None and not RewardHead.evidence(unsure.auc_interval)
    assert not RewardHead.evidence((0.45, 0.9)) and RewardHead.evidence((0.55, 0.9))
    for name, head in (("none", unsure), ("chance", dataclasses.replace(unsure, auc=0.7, auc_interval=(0.45, 0.9)))):
        folder = tmp_path / name
        shutil.copytree(tiny_model_dir, folder)
        head.save(folder)
        with caplog.at_level(logging.INFO, logger="bot.generation.loading"):
            loaded = load_model(folder, version=3, device="cpu")
        assert loaded.reward is None, name
        assert "does not rank" in caplog.text
    # A reward.json written before the trainer decided: the evidence decides.
    record = (tmp_path / "chance" / FILE).read_text().replace('"ranks": false', '"ranks": null')
    (tmp_path / "chance" / FILE).write_text(record)
    assert RewardHead.load(tmp_path / "chance") is not None and not RewardHead.load(tmp_path / "chance").ranks

    registry = ModelRegistry(tmp_path / "models")
    metrics = {"reward_examples": 40, "reward_auc": 0.7, "reward_auc_interval": [0.45, 0.9], "reward_ranks": False}
    with registry.staging() as staged:
        (staged / "model.safetensors").write_text("w")
        registry.publish(staged, parent=0, metrics=metrics)
    assert "0.70 (0.45-0.90), not ranking" in format_versions(registry)
