"""The eval gate's statistics: paired intervals, "not enough data", drift from version 0 (real tiny models)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from storage.dialogue import render_prompt
from trainer.config import GateConfig
from trainer.dataset import Example
from trainer.evaluate import (
    paired_auc_difference,
    perplexity,
    probe_prompts,
    probe_questions,
    reference_text,
    relevance,
    run_gate,
    sample_answers,
)
from trainer.models import load_causal_lm

FAST = GateConfig(samples=4, max_new_tokens=6, bootstrap_samples=300)


def test_the_preference_difference_interval_is_paired_and_honest():
    rng = np.random.default_rng(0)
    liked, disliked = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
    same = paired_auc_difference((liked, disliked), (liked, disliked), samples=500, seed=0)
    assert same["preference_difference"] == (0.0, 0.0)  # the same model: no difference in any resample
    low, high = same["preference_accuracy"]
    assert low < 0.75 < high  # the AUC of these draws (about 0.76) has a real spread

    worse = paired_auc_difference((-liked, -disliked), (liked, disliked), samples=500, seed=0)
    assert worse["preference_difference"][1] < 0  # a reversed ranking is confidently worse

    few_l, few_d = rng.normal(0.2, 1.0, 4), rng.normal(0.0, 1.0, 4)
    noisy = paired_auc_difference((few_l + rng.normal(0, 0.5, 4), few_d), (few_l, few_d), samples=500, seed=0)
    low, high = noisy["preference_difference"]
    assert low <= 0 <= high  # four of each: a wiggle is not evidence


def _sharpened(folder: Path, factor: float):
    """The model with its final layer norm scaled by ``factor``: sharper next-token
    distributions above 1, and a higher perplexity on the reference text, which the tiny
    model predicts over-confidently already."""
    model, tokenizer = load_causal_lm(folder, device=torch.device("cpu"))
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(factor)
        model.transformer.ln_f.bias.mul_(factor)
    return model, tokenizer


def test_few_held_out_answers_are_not_enough_data_instead_of_a_rejection(tiny_model_dir: Path):
    parent, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    candidate, _ = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    held_out = [Example("User: hi\nBot:", " Hello friend.", True, f"g{i}") for i in range(3)]
    held_out += [Example("User: hi\nBot:", " Pizza.", False, f"h{i}") for i in range(2)]
    gate = run_gate(
        candidate=candidate, parent=parent, tokenizer=tokenizer, held_out=held_out, held_out_pairs=[], config=FAST
    )
    assert gate.passed, gate.reasons
    assert gate.preference_accuracy is None and gate.preference_pairs == 0
    assert gate.not_enough_data == ("held-out preference: 3 liked and 2 disliked held-out answers (5 of each needed)",)
    metrics = gate.metrics()
    assert metrics["not_enough_data"] == list(gate.not_enough_data)
    assert metrics["perplexity_ratio_interval"] == [1.0, 1.0]  # the same weights: the same tokens, the same log-probs
    assert metrics["base_perplexity"] == pytest.approx(gate.parent.perplexity)


def test_slow_drift_from_version_0_is_caught_even_when_each_step_is_small(tiny_model_dir: Path):
    base, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    parent, _ = _sharpened(tiny_model_dir, 1.25)
    candidate, _ = _sharpened(tiny_model_dir, 1.5625)
    text = reference_text()
    base_ppl, parent_ppl, candidate_ppl = (perplexity(m, tokenizer, text) for m in (base, parent, candidate))
    assert base_ppl < parent_ppl < candidate_ppl
    # A ratio each step stays under, and the whole way from version 0 does not.
    ratio = (candidate_ppl / parent_ppl + candidate_ppl / base_ppl) / 2
    config = GateConfig(samples=4, max_new_tokens=6, bootstrap_samples=300, perplexity_ratio=ratio, distinct_ratio=0)
    gate = run_gate(
        candidate=candidate,
        parent=parent,
        base=base,
        tokenizer=tokenizer,
        held_out=[],
        held_out_pairs=[],
        config=config,
    )
    assert not gate.passed
    assert len(gate.reasons) == 1 and "version 0" in gate.reasons[0] and "drift" in gate.reasons[0]
    low, high = gate.intervals["base_perplexity_ratio"]
    assert low <= candidate_ppl / base_ppl <= high and low > 1
    assert math.isclose(gate.base_perplexity or 0, base_ppl, rel_tol=1e-6)


def test_early_stopping_publishes_the_latest_checkpoint_that_passes_and_else_keeps_the_end(tiny_model_dir: Path):
    from trainer.job import _latest_passing

    parent, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    model, _ = _sharpened(tiny_model_dir, 3.0)  # the end of a run that over-shot: perplexity far above the parent's
    end = {name: p.detach().clone() for name, p in model.named_parameters()}
    middle, _ = _sharpened(tiny_model_dir, 1.1)  # a checkpoint half-way: still fluent
    early = {name: p.detach().clone() for name, p in parent.named_parameters()}
    config = GateConfig(samples=4, max_new_tokens=6, bootstrap_samples=200, perplexity_ratio=1.5, distinct_ratio=0)

    def gate_of(candidate):
        return run_gate(
            candidate=candidate, parent=parent, tokenizer=tokenizer, held_out=[], held_out_pairs=[], config=config
        )

    checkpoints = [(10, early), (20, {name: p.detach().clone() for name, p in middle.named_parameters()})]
    gate, chosen = _latest_passing(model, 30, checkpoints, gate_of)
    assert gate.passed
    assert (chosen.step, chosen.tried) == (
        20,
        2,
    )  # the end failed, the latest checkpoint passed; the earliest not tried
    assert chosen.later_reasons and "perplexity" in chosen.later_reasons[0]
    assert torch.equal(model.transformer.ln_f.weight, middle.transformer.ln_f.weight)  # what gets published

    # When no checkpoint passes, the end of the run stays in the model, with its own reasons.
    _, _ = _latest_passing(model, 30, [], gate_of)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(end[name])
    strict = GateConfig(samples=4, max_new_tokens=6, bootstrap_samples=200, perplexity_ratio=0.5, distinct_ratio=0)
    gate, chosen = _latest_passing(
        model,
        30,
        checkpoints,
        lambda c: run_gate(
            candidate=c, parent=parent, tokenizer=tokenizer, held_out=[], held_out_pairs=[], config=strict
        ),
    )
    assert not gate.passed and (chosen.step, chosen.tried) == (30, 3)
    assert all(torch.equal(p, end[name]) for name, p in model.named_parameters())


COLLAPSE = " Your cat is happy and warm, let it sleep."


def _collapsing(folder: Path, steps: int):
    """The tiny model fine-tuned for ``steps`` steps to answer every probe question with one
    sentence: with each step more of its answers are that sentence, as bench.learning's
    dense seed 0 did over three versions (55 % of its answers), while its perplexity on the
    reference text hardly moves."""
    model, tokenizer = load_causal_lm(folder, device=torch.device("cpu"))
    torch.manual_seed(0)
    texts = [render_prompt(q) + COLLAPSE + tokenizer.eos_token for q in probe_questions()]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def test_a_collapse_that_compounds_over_versions_is_rejected_against_version_0(tiny_model_dir: Path):
    base, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    parent, _ = _collapsing(tiny_model_dir, 7)  # already collapsing: what the old rule let through, step by step
    candidate, _ = _collapsing(tiny_model_dir, 9)
    # One answer per probe question, as the old gate sampled them (it had 23 questions for its 32 samples).
    config = GateConfig(bootstrap_samples=200, samples=len(probe_questions()))
    gate = run_gate(
        candidate=candidate,
        parent=parent,
        base=base,
        tokenizer=tokenizer,
        held_out=[],
        held_out_pairs=[],
        config=config,
    )
    # The old gate's only diversity rule (distinct-2 >= 0.7 x the parent's) and its perplexity
    # rules all pass: each step is small; the drop from version 0 is not.
    assert gate.candidate.distinct_2 >= config.distinct_ratio * gate.parent.distinct_2
    assert gate.candidate.perplexity <= config.perplexity_ratio * min(gate.parent.perplexity, gate.base_perplexity or 0)
    assert gate.candidate.top_share > 0.5  # one sentence is over half of the answers to 23 different questions
    assert not gate.passed
    reasons = " | ".join(gate.reasons)
    assert "version 0's" in reasons and "distinct" in reasons, reasons
    assert "one answer is" in reasons and "relevance" in reasons, reasons
    metrics = gate.metrics()
    assert metrics["base_top_share"] < 0.2 and metrics["top_share"] == pytest.approx(gate.candidate.top_share, abs=1e-4)
    assert metrics["base_relevance"] > 1.0 > 0.5 > metrics["relevance"]

    # Version 0 against itself passes every check: the floors are relative to what it does.
    same = run_gate(
        candidate=base, parent=base, base=base, tokenizer=tokenizer, held_out=[], held_out_pairs=[], config=config
    )
    assert same.passed, same.reasons


def test_relevance_tells_answers_to_the_question_from_answers_to_another(tiny_model_dir: Path):
    model, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    prompts = probe_prompts(len(probe_questions()))
    answers = sample_answers(model, tokenizer, prompts, max_new_tokens=24, seed=0)
    # Varied answers, each given to a question half the list away: diverse, but off-topic.
    half = len(answers) // 2
    shuffled = answers[half:] + answers[:half]
    on_topic, off_topic = relevance(model, tokenizer, prompts, answers), relevance(model, tokenizer, prompts, shuffled)
    assert on_topic > 1.0 and off_topic < 0.3 * on_topic, (on_topic, off_topic)
    assert relevance(model, tokenizer, prompts, [COLLAPSE.strip()] * len(prompts)) == pytest.approx(0, abs=0.5)
