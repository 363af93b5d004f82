"""Comparison votes the reward model needs: THUMBTUNE_COMPARE=auto against comparisons at random.

Part of ``python -m bench.learning --compare`` (it prints ``compare_auto``). One stream of
prompts per seed, on the varied test model (version 0, held fixed: this measures what the
reward model learns from verdicts, not the policy's training), the seed's simulated people
(bench.learning's rule per seed). Every prompt gets ``BEST_OF`` sampled candidates; both
strategies see the same prompts and candidates and run the bot's own chooser
(:class:`bot.comparison.AutoComparisons`) at the same share:

- ``random``: the chooser with no reward model (a comparison at random, of two samples);
- ``auto``: the chooser with the current reward head's scores, once a head fitted on the
  verdicts so far has held-out evidence (as the bot uses only a ranking head), else at random.

After every round the reward head is refitted as a training run does (``fit_reward`` on the
verdicts' labels: 1️⃣ / 2️⃣ make one side liked and the other disliked, 👎 both disliked, a
tie neither; a fifth of the compared prompts held out for its evidence) and its AUC measured
on a fixed set of answers labelled by the people's true taste. People give the verdict their
taste says, except ``NOISE`` of them who pick one of the four at random.

Figures: per seed the AUC curve of each strategy against the comparison votes cast; the
votes auto needs to reach random's AUC after all of its votes (``saving``: 1 - auto's votes
/ random's, on the round grid; ``None``: auto never reached it), median over seeds.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.comparison import AutoComparisons, Verdict, verdict_for
from bot.generation import LoadedModel, SamplingParams, load_model
from bot.generation.decoding import sample
from bot.simulate import Taste, likes
from storage.dialogue import render_prompt
from storage.reward import RewardHead, answer_features
from trainer.config import GateConfig, TrainConfig
from trainer.dataset import Example
from trainer.evaluate import pairwise_wins
from trainer.reward import fit_reward

BEST_OF = 4
SHARE = 0.25  # THUMBTUNE_COMPARE_SHARE
ROUNDS, ROUND_PROMPTS = 12, 80  # about 20 comparisons a round
NOISE = 0.1  # verdicts picked at random
EVALUATED = 150  # questions x 2 answers in the fixed AUC set
HELD_OUT_EVERY = 5  # every fifth compared prompt holds out its verdict's answers


@dataclass
class _Strategy:
    chooser: AutoComparisons
    uses_head: bool
    examples: list[Example] = field(default_factory=list)
    held_out: list[Example] = field(default_factory=list)
    head: RewardHead | None = None  # ranks: has held-out evidence
    votes: int = 0
    curve: list[tuple[int, float | None]] = field(default_factory=list)  # (votes, AUC on the fixed set)


def _verdict(first: bool, second: bool, rng: random.Random) -> Verdict:
    if rng.random() < NOISE:
        return rng.choice(list(Verdict))
    return verdict_for(first, second)


def _candidates(loaded: LoadedModel, questions: list[str], seed: int, max_new_tokens: int) -> list[list[str]]:
    torch.manual_seed(seed)
    prompts = [render_prompt(q) for q in questions]
    params = SamplingParams(max_new_tokens=max_new_tokens)
    out: list[list[str]] = []
    for start in range(0, len(prompts), 32):
        batch = prompts[start : start + 32]
        out += [r.texts for r in sample(loaded, batch, params, [BEST_OF] * len(batch))]
    return out


def _auc(head: RewardHead | None, features: np.ndarray, labels: np.ndarray) -> float | None:
    if head is None:
        return None
    scores = head.score(features)
    return round(float(pairwise_wins(scores[labels], scores[~labels]).mean()), 4)


def one_seed(
    base: Path, *, seed: int, taste: Taste, word: str, questions: tuple[str, ...], max_new_tokens: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    loaded = load_model(base, version=0, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    gate, train = GateConfig(), TrainConfig()
    # The fixed measuring set: two answers to each of EVALUATED questions, labelled by the true taste.
    asked = [rng.choice(questions) for _ in range(EVALUATED)]
    measured = [
        (q, a)
        for q, answers in zip(asked, _candidates(loaded, asked, seed + 1000, max_new_tokens), strict=True)
        for a in answers[:2]
    ]
    features = answer_features(model, tokenizer, [(render_prompt(q), a) for q, a in measured])
    labels = np.array([likes(taste, q, a, prefer=word) for q, a in measured])
    strategies = {
        "random": _Strategy(AutoComparisons(SHARE, rng=random.Random(seed)), uses_head=False),
        "auto": _Strategy(AutoComparisons(SHARE, rng=random.Random(seed)), uses_head=True),
    }
    people = {name: random.Random(seed + 7) for name in strategies}  # the same people's mistakes in both
    compared = dict.fromkeys(strategies, 0)
    for round_index in range(ROUNDS):
        stream = [rng.choice(questions) for _ in range(ROUND_PROMPTS)]
        sampled = _candidates(loaded, stream, seed * 100 + round_index, max_new_tokens)
        for name, strategy in strategies.items():
            head = strategy.head if strategy.uses_head else None
            scores = (
                head.score(
                    answer_features(
                        model,
                        tokenizer,
                        [(render_prompt(q), a) for q, c in zip(stream, sampled, strict=True) for a in c],
                    )
                ).reshape(len(stream), BEST_OF)
                if head is not None
                else None
            )
            for index, (question, texts) in enumerate(zip(stream, sampled, strict=True)):
                if scores is None:
                    pair = (0, 1) if strategy.chooser.at_random() else None
                else:
                    pair = strategy.chooser.choose(scores[index].tolist())
                if pair is None:
                    continue
                sides = [texts[i] for i in pair]
                first, second = (likes(taste, question, side, prefer=word) for side in sides)
                verdict = _verdict(first, second, people[name])
                strategy.votes += 1
                compared[name] += 1
                into = strategy.held_out if compared[name] % HELD_OUT_EVERY == 0 else strategy.examples
                for side, reward in zip(sides, verdict.rewards, strict=True):
                    if reward:
                        into.append(Example(render_prompt(question), side, reward > 0, f"{name}-{round_index}-{index}"))
            fitted = fit_reward(
                model,
                tokenizer,
                strategy.examples,
                strategy.held_out,
                min_examples=gate.min_preference_examples,
                samples=gate.bootstrap_samples,
                seed=seed,
            )
            strategy.curve.append((strategy.votes, _auc(fitted, features, labels)))
            ranks = fitted is not None and RewardHead.evidence(fitted.auc_interval, train.reward_min_auc)
            strategy.head = fitted if ranks else None
    random_votes, random_auc = strategies["random"].curve[-1]
    reached = votes_to_reach(strategies["auto"].curve, random_auc)
    return {
        "seed": seed,
        "taste": taste,
        "liked_share": round(float(labels.mean()), 4),
        "random_auc": random_auc,
        "random_votes": random_votes,
        # Whether random's last head had held-out evidence (it would rank in the bot): without
        # it there is no AUC to reach, and the seed says nothing about saving votes.
        "random_head_ranks": strategies["random"].head is not None,
        "auto_auc": strategies["auto"].curve[-1][1],
        "auto_votes_to_match": reached,
        "saving": None if reached is None or not random_votes else round(1 - reached / random_votes, 4),
        "curves": {name: s.curve for name, s in strategies.items()},
    }


def votes_to_reach(curve: list[tuple[int, float | None]], target: float | None) -> float | None:
    """The votes at which ``curve`` (votes, AUC) first reaches ``target``, linear between its
    points (None: never, or no target)."""
    if target is None:
        return None
    before: tuple[int, float] | None = None
    for votes, auc in curve:
        if auc is not None and auc >= target:
            if before is None or auc == before[1]:
                return float(votes)
            return round(before[0] + (target - before[1]) / (auc - before[1]) * (votes - before[0]), 1)
        before = (votes, auc) if auc is not None else before
    return None


def compare_auto(
    seeds: list[int],
    bases: dict[int, Path],
    rules: dict[int, tuple[Taste, str]],
    questions: tuple[str, ...],
    max_new_tokens: int,
) -> dict[str, Any]:
    """The figures over seeds (see the module's docstring)."""
    started = time.monotonic()
    per_seed = [
        one_seed(
            bases[seed],
            seed=seed,
            taste=rules[seed][0],
            word=rules[seed][1],
            questions=questions,
            max_new_tokens=max_new_tokens,
        )
        for seed in seeds
    ]
    # Over the seeds whose random head has evidence; one where auto never matched random counts as no saving.
    savings = [s["saving"] if s["saving"] is not None else 0.0 for s in per_seed if s["random_head_ranks"]]
    return {
        "share": SHARE,
        "rounds": ROUNDS,
        "round_prompts": ROUND_PROMPTS,
        "noise": NOISE,
        "median_saving": round(statistics.median(savings), 4) if savings else None,
        "seeds_with_evidence": len(savings),
        "seeds": per_seed,
        "seconds": round(time.monotonic() - started, 1),
    }
