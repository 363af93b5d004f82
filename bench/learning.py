"""`python -m bench.learning [--quick]`: does the loop learn from the votes people give?

`thumbtune simulate` (the tiny model, the simulation's training defaults, 8 people, 3
runs of 128 prompts) over 5 seeds (3 with ``--quick``) in two regimes of feedback:

- dense: every answer voted by 2 people, no mistakes;
- sparse: 40 % of the answers voted, by 1 person, 15 % of the votes flipped.

Each seed runs twice: with the bot's default ``THUMBTUNE_BEST_OF`` and with best-of-1.
Prints one JSON object ``{"regimes": {"dense": {...}, "sparse": {...}}, "best_of_cost": {...}}``;
per regime: ``gain_median`` and ``gain_min`` (approval of the last live version minus
version 0's, after 3 runs, with the default best-of), ``votes_to_gain_0_2_median`` and
``votes_to_gain_0_2_median_best_of_1`` (votes cast until the live version's approval first
reached version 0's + 0.2, median over the seeds; null when half or more never got there),
``published``, ``rejected``, ``stalls`` (seeds whose runs end in 2 or more rejections in a
row), ``drifted`` (published versions whose reference perplexity is beyond the gate's
ratio of version 0's), ``reward_auc_median`` (the last reward model's held-out AUC),
``best_of_approval`` (approval of the last best-of-1 version's answers to the simulation's
questions when n = 1, 2, 4, 8 candidates are ranked by its reward model), the per-seed
figures and ``seconds``. ``best_of_cost``: ms per answer (48 new tokens, one thread) for
n = 1, 2, 4, 8 on a model of GPT-2's shape, reward scoring included. ``--history
since-live``: the runs learn only from the votes cast since the live version went live
(``THUMBTUNE_TRAIN_HISTORY``), to measure the default of learning from all of them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import emit, median, quick_args, seconds_each, write_gpt2_small_shape
from bot.generation import SamplingParams, load_model
from bot.generation.decoding import sample
from bot.settings import Settings
from bot.simulate import QUESTIONS, SimulationOptions, run_simulation
from bot.tinymodel import make_tiny_model
from storage.dialogue import render_prompt
from storage.registry import ModelRegistry
from storage.reward import RewardHead
from trainer.config import GateConfig

# (vote share, voters per answer, noise)
REGIMES: dict[str, tuple[float, int, float]] = {"dense": (1.0, 2, 0.0), "sparse": (0.4, 1, 0.15)}
GAIN = 0.2
BEST_OF = int(Settings.model_fields["best_of"].default)  # the bot's default
RANKED = (1, 2, 4, 8)


def votes_to_gain(versions: list[dict], *, gain: float = GAIN) -> int | None:
    """Votes cast before the first live version whose approval reached version 0's + ``gain``."""
    base = versions[0]["approval"] or 0.0
    for version in versions[1:]:
        if version["approval"] is not None and version["approval"] >= base + gain:
            return int(version["votes_before"])
    return None


def stalled(runs: list[dict]) -> bool:
    """The runs end in two or more rejections in a row (skipped and failed runs aside)."""
    decided = [run["status"] for run in runs if run["status"] in ("published", "rejected")]
    return len(decided) >= 2 and decided[-2:] == ["rejected", "rejected"]


def drifted(versions: list[dict], ratio: float = GateConfig.perplexity_ratio) -> int:
    """Published versions whose reference perplexity is beyond ``ratio`` × version 0's."""
    count = 0
    for version in versions[1:]:
        gate = version["gate"]
        base = gate.get("base_perplexity")
        if base and gate.get("perplexity") and gate["perplexity"] > ratio * base:
            count += 1
    return count


def simulate(name: str, seed: int, model: Path, *, best_of: int, data_dir: Path, history: str) -> dict:
    vote_share, voters, noise = REGIMES[name]
    options = SimulationOptions(
        users=8,
        rounds=3,
        prompts=128,
        seed=seed,
        model=model,
        vote_share=vote_share,
        voters_per_answer=voters,
        noise=noise,
        best_of=best_of,
        data_dir=data_dir,
        history=history,
    )
    return run_simulation(options)


def ranked_approval(data_dir: Path, *, prefer: str = "warm", prompts: int = 96, seed: int = 0) -> list[float] | None:
    """Approval of the live version's answers when n candidates are ranked by its reward model."""
    registry = ModelRegistry(data_dir / "models")
    version = registry.current_version()
    if version == 0:
        return None
    loaded = load_model(registry.get(version).path, version=version, device="cpu")
    if loaded.reward is None:
        return None
    rng = random.Random(seed)
    questions = [render_prompt(rng.choice(QUESTIONS)) for _ in range(prompts)]
    approvals = []
    for n in RANKED:
        torch.manual_seed(seed)
        results = sample(loaded, questions, SamplingParams(max_new_tokens=24), [n] * prompts, [True] * prompts)
        approvals.append(round(sum(prefer in r.texts[0].lower() for r in results) / prompts, 4))
    return approvals


def regime(name: str, seeds: list[int], model: Path, scratch: Path, history: str) -> dict:
    started = time.monotonic()
    gains, needed, needed_best_of_1, aucs, ranked = [], [], [], [], []
    published = rejected = stalls = drift = 0
    for seed in seeds:
        report = simulate(name, seed, model, best_of=BEST_OF, data_dir=scratch / f"{name}-{seed}", history=history)
        versions, runs = report["versions"], report["runs"]
        gains.append(round((versions[-1]["approval"] or 0.0) - (versions[0]["approval"] or 0.0), 4))
        needed.append(votes_to_gain(versions))
        published += sum(run["status"] == "published" for run in runs)
        rejected += sum(run["status"] == "rejected" for run in runs)
        stalls += stalled(runs)
        drift += drifted(versions)
        auc = versions[-1]["gate"].get("reward_auc")
        if auc is not None:
            aucs.append(auc)
        plain = simulate(name, seed, model, best_of=1, data_dir=scratch / f"{name}-{seed}-best-of-1", history=history)
        needed_best_of_1.append(votes_to_gain(plain["versions"]))
        ranked.append(ranked_approval(scratch / f"{name}-{seed}-best-of-1", seed=seed))
    by_n = [r for r in ranked if r is not None]
    return {
        "gain_median": round(statistics.median(gains), 4),
        "gain_min": min(gains),
        "gains": gains,
        "votes_to_gain_0_2_median": _median_reached(needed),
        "votes_to_gain_0_2_median_best_of_1": _median_reached(needed_best_of_1),
        "votes_to_gain_0_2": needed,
        "votes_to_gain_0_2_best_of_1": needed_best_of_1,
        "published": published,
        "rejected": rejected,
        "stalls": stalls,
        "drifted": drift,
        "reward_auc_median": round(statistics.median(aucs), 4) if aucs else None,
        "best_of_approval": (
            {str(n): round(float(np.median([r[i] for r in by_n])), 4) for i, n in enumerate(RANKED)} if by_n else None
        ),
        "seconds": round(time.monotonic() - started, 1),
    }


def _median_reached(votes: list[int | None]) -> float | None:
    reached = [v for v in votes if v is not None]
    return statistics.median(reached) if len(reached) * 2 > len(votes) else None


def best_of_cost(scratch: Path) -> dict[str, float]:
    """ms per answer with n ranked candidates on GPT-2's shape (a random reward head)."""
    loaded = load_model(write_gpt2_small_shape(scratch / "gpt2-shape"), version=1, device="cpu")
    hidden = loaded.model.config.hidden_size
    rng = np.random.default_rng(0)
    loaded.reward = RewardHead(rng.normal(size=hidden), 0.0, np.zeros(hidden), np.ones(hidden), examples=0)
    prompt = [render_prompt("what should I do today")]
    cost = {}
    params = SamplingParams(max_new_tokens=48)
    for n in RANKED:

        def answer(n: int = n) -> None:
            sample(loaded, prompt, params, [n], [True])

        # Random weights seldom end an answer early: about 48 tokens per candidate.
        cost[str(n)] = round(1000 * median(seconds_each(3, answer)), 1)
    return cost


def main() -> None:
    def more(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--history",
            choices=["all", "since-live"],
            default="all",
            help="THUMBTUNE_TRAIN_HISTORY of the runs (default all, the bot's)",
        )

    args = quick_args(__doc__ or "", "3 seeds instead of 5", more)
    seeds = list(range(3 if args.quick else 5))
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        scratch = Path(tmp)
        model = make_tiny_model(scratch / "tiny")
        regimes = {name: regime(name, seeds, model, scratch, args.history) for name in REGIMES}
        emit(
            {
                "seeds": seeds,
                "best_of": BEST_OF,
                "history": args.history,
                "regimes": regimes,
                "best_of_cost": best_of_cost(scratch),
            }
        )


if __name__ == "__main__":
    main()
