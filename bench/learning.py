"""`python -m bench.learning [--quick]`: how much the loop learns from votes, split into training and selection.

For each test model and regime of feedback, over seeds (5; 2 with ``--quick``), a
`thumbtune simulate` loop of 3 runs **at best-of-1**, so every gain it shows is training
alone; then, on the same questions and sampling seeds:

- ``training``: approval of the last live version minus version 0's (one answer each);
- ``selection``: the last version's approval when its reward head ranks 4 candidates minus
  with one (what best-of-4 serving adds on top; ``serving`` counts it only when the head
  has held-out evidence and so ranks in the bot);
- ``version_0_best_of_4``: version 0 with 4 candidates ranked by a head fitted on version
  0's own features from the last run's training votes (selection with no training at all);
- ``held_out``: the last version's approval on questions no run trained on (varied model:
  one question per topic, asked only in the last round) minus its approval on the trained
  questions in that round;
- per version: ``distinct_answers`` and ``top_answer_share`` of its answers;
- per run: which gate checks ran (``not_enough_data`` says which did not), published,
  rejected, published from an earlier checkpoint after the end of the run was rejected
  (``rescued``), the reward head's AUC with the held-out answers behind it.

Models: ``tiny`` (the shipped canned dialogues; taste: the word "warm") and ``varied``
(make-tiny-model --varied; taste: a warm tone, a property of any sentence), each built with
the seed's base-model seed. Regimes: dense (every answer voted by 2 people, no mistakes)
and sparse (40 % voted, by 1 person, 15 % of the votes flipped). Medians with the range
across seeds (``[min, max]``). Also ``varied_model``: distinct answers of the varied
model (seed 0) to 100 benchmark questions. Prints one JSON object on its last line.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from bench.common import emit, quick_args
from bot.dialoguegen import benchmark_questions
from bot.generation import SamplingParams, load_model
from bot.generation.decoding import sample
from bot.simulate import (
    QUESTIONS,
    VARIED_MAX_NEW_TOKENS,
    SimulationOptions,
    Taste,
    likes,
    run_simulation,
    varied_questions,
)
from bot.tinymodel import VARIED, TinyModelSpec, make_tiny_model
from storage.dialogue import render_prompt
from storage.registry import ModelRegistry
from storage.reward import RewardHead
from trainer import snapshot
from trainer.evaluate import sample_answers
from trainer.models import load_causal_lm
from trainer.reward import fit_reward

# (vote share, voters per answer, noise)
REGIMES: dict[str, tuple[float, int, float]] = {"dense": (1.0, 2, 0.0), "sparse": (0.4, 1, 0.15)}
BEST_OF = 4
MEASURE = 96  # answers per measurement


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    spec: TinyModelSpec
    taste: Taste
    questions: tuple[str, ...]
    held_out: tuple[str, ...]
    max_new_tokens: int


def models() -> list[Model]:
    trained, held_out = varied_questions()
    return [
        Model("tiny", TinyModelSpec(), "word", QUESTIONS, (), SimulationOptions.max_new_tokens),
        Model("varied", VARIED, "warm", trained, held_out, VARIED_MAX_NEW_TOKENS),
    ]


def approvals(
    folder: Path,
    model: Model,
    questions: list[str],
    *,
    seed: int,
    head: RewardHead | None = None,
) -> dict[int, float]:
    """Approval of the model in ``folder`` with 1 and ``BEST_OF`` candidates ranked by ``head``."""
    loaded = load_model(folder, version=1, device="cpu")
    loaded.reward = head
    prompts = [render_prompt(q) for q in questions]
    out = {}
    for n in (1, BEST_OF) if head is not None else (1,):
        torch.manual_seed(seed)
        results = sample(
            loaded,
            prompts,
            SamplingParams(max_new_tokens=model.max_new_tokens),
            [n] * len(prompts),
            [n > 1] * len(prompts),
        )
        liked = [likes(model.taste, q, r.texts[0]) for q, r in zip(questions, results, strict=True)]
        out[n] = round(sum(liked) / len(liked), 4)
    return out


def last_snapshot(data_dir: Path) -> str | None:
    runs = sorted((data_dir / "artifacts" / "runs").glob("*"))
    return str(runs[-1]) if runs else None


def one_seed(model: Model, regime: str, seed: int, base: Path, scratch: Path, prompts: int) -> dict:
    vote_share, voters, noise = REGIMES[regime]
    data_dir = scratch / f"{model.name}-{regime}-{seed}"
    options = SimulationOptions(
        users=8,
        rounds=3,
        prompts=prompts,
        prefer="warm",
        taste=model.taste,
        questions=model.questions,
        held_out_questions=model.held_out,
        max_new_tokens=model.max_new_tokens,
        seed=seed,
        model=base,
        vote_share=vote_share,
        voters_per_answer=voters,
        noise=noise,
        best_of=1,
        data_dir=data_dir,
    )
    report = run_simulation(options)
    versions = report["versions"]
    rng = random.Random(1000 + seed)
    asked = [rng.choice(model.questions) for _ in range(MEASURE)]
    registry = ModelRegistry(data_dir / "models")
    last = registry.current_version()
    zero = approvals(base, model, asked, seed=seed)[1]
    result: dict = {
        "seed": seed,
        "version_0": zero,
        "versions": [
            {k: v.get(k) for k in ("version", "approval", "held_out_approval", "distinct_answers", "top_answer_share")}
            for v in versions
        ],
        "runs": [],
    }
    for version in registry.versions():
        metrics = version.metrics
        result["runs"].append(
            {
                "version": version.version,
                "status": version.status,
                "rescued": bool(metrics.get("end_of_run_reasons")) and version.status == "published",
                "not_enough_data": metrics.get("not_enough_data", []),
                "reasons": list(version.reasons),
                "reward_auc": metrics.get("reward_auc"),
                "reward_auc_interval": metrics.get("reward_auc_interval"),
                "reward_held_out": metrics.get("reward_held_out"),
                "reward_ranks": metrics.get("reward_ranks"),
                "top_share": metrics.get("top_share"),
                "distinct_2": metrics.get("distinct_2"),
                "base_distinct_2": metrics.get("base_distinct_2"),
            }
        )
    result["training"] = 0.0
    result["selection"] = result["serving"] = None
    if last:
        folder = registry.get(last).path
        head = RewardHead.load(folder)
        measured = approvals(folder, model, asked, seed=seed, head=head)
        result["training"] = round(measured[1] - zero, 4)
        if BEST_OF in measured:
            result["selection"] = round(measured[BEST_OF] - measured[1], 4)
            result["serving"] = result["selection"] if head is not None and head.ranks else 0.0
    # Version 0 ranked by a head on its own features, fitted on the last run's training votes.
    uri = last_snapshot(data_dir)
    result["version_0_best_of_4"] = None
    if uri:
        _, dataset = snapshot.read(uri)
        lm, tokenizer = load_causal_lm(base, device=torch.device("cpu"))
        head = fit_reward(lm, tokenizer, dataset.train, dataset.held_out, min_examples=5, samples=200, seed=seed)
        if head is not None:
            result["version_0_best_of_4"] = round(
                approvals(base, model, asked, seed=seed, head=head)[BEST_OF] - zero, 4
            )
    # Held-out questions are asked in the last round only, of the last live version: its
    # approval on them minus on the trained questions (the same round, the same people).
    held, trained = versions[-1].get("held_out_approval"), versions[-1].get("approval")
    if model.held_out and held is not None and trained is not None:
        result["held_out"] = round(held - trained, 4)
    return result


def summary(values: list[float | None]) -> dict | None:
    have = [v for v in values if v is not None]
    if not have:
        return None
    return {"median": round(statistics.median(have), 4), "range": [min(have), max(have)], "seeds": len(have)}


def regime(model: Model, name: str, seeds: list[int], scratch: Path, prompts: int) -> dict:
    started = time.monotonic()
    per_seed = []
    for seed in seeds:
        base = scratch / f"{model.name}-base-{seed}"
        if not (base / "config.json").exists():
            make_tiny_model(base, dataclasses.replace(model.spec, seed=seed))
        per_seed.append(one_seed(model, name, seed, base, scratch, prompts))
    runs = [run for s in per_seed for run in s["runs"]]
    checks: Counter[str] = Counter()
    for run in runs:
        checks["gate_runs"] += 1
        skipped = " ".join(run["not_enough_data"])
        checks["preference_check_ran"] += "held-out preference" not in skipped
    published = [run for run in runs if run["status"] == "published"]
    return {
        "training": summary([s["training"] for s in per_seed]),
        "selection": summary([s["selection"] for s in per_seed]),
        "serving": summary([s["serving"] for s in per_seed]),
        "version_0_best_of_4": summary([s["version_0_best_of_4"] for s in per_seed]),
        "held_out": summary([s.get("held_out") for s in per_seed]),
        "published": len(published),
        "rejected": sum(run["status"] == "rejected" for run in runs),
        "rescued": sum(run["rescued"] for run in runs),
        "checks": dict(checks),
        "max_top_share_published": max((run["top_share"] or 0 for run in published), default=None),
        "reward_heads_ranking": sum(bool(run["reward_ranks"]) for run in runs),
        "seeds": per_seed,
        "seconds": round(time.monotonic() - started, 1),
    }


def varied_model_distinct(scratch: Path) -> dict:
    """Distinct answers of the varied model (seed 0) to 100 benchmark questions."""
    base = scratch / "varied-base-0"
    started = time.monotonic()
    if not (base / "config.json").exists():
        make_tiny_model(base, VARIED)
    built = round(time.monotonic() - started, 1)
    lm, tokenizer = load_causal_lm(base, device=torch.device("cpu"))
    answers = sample_answers(
        lm, tokenizer, [render_prompt(q) for q in benchmark_questions(100)], max_new_tokens=40, seed=0
    )
    counts = Counter(answers)
    return {"distinct": len(counts), "of": len(answers), "top": counts.most_common(1)[0][1], "build_seconds": built}


def best_of_cost(scratch: Path) -> dict[str, float]:
    """ms per answer with n ranked candidates on GPT-2's shape (a random reward head), one thread."""
    import numpy as np

    from bench.common import median, seconds_each, write_gpt2_small_shape

    loaded = load_model(write_gpt2_small_shape(scratch / "gpt2-shape"), version=1, device="cpu")
    hidden = loaded.model.config.hidden_size
    rng = np.random.default_rng(0)
    loaded.reward = RewardHead(rng.normal(size=hidden), 0.0, np.zeros(hidden), np.ones(hidden), examples=0)
    prompt = [render_prompt("what should I do today")]
    params = SamplingParams(max_new_tokens=48)
    cost = {}
    for n in (1, 2, 4, 8):

        def answer(n: int = n) -> None:
            sample(loaded, prompt, params, [n], [True])

        cost[str(n)] = round(1000 * median(seconds_each(3, answer)), 1)  # random weights: ~48 tokens each
    return cost


def main() -> None:
    def more(parser) -> None:
        parser.add_argument("--models", default="tiny,varied", help="which test models (default tiny,varied)")
        parser.add_argument("--regimes", default="dense,sparse", help="which regimes (default dense,sparse)")
        parser.add_argument("--cost", action="store_true", help="also best_of_cost: ms per answer for n = 1, 2, 4, 8")

    args = quick_args(__doc__ or "", "2 seeds of 64 prompts per round instead of 5 of 128", more)
    seeds = list(range(2 if args.quick else 5))
    prompts = 64 if args.quick else 128
    chosen = [m for m in models() if m.name in args.models.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        scratch = Path(tmp)
        out: dict = {"seeds": seeds, "prompts_per_round": prompts, "best_of": BEST_OF}
        if any(m.name == "varied" for m in chosen):
            out["varied_model"] = varied_model_distinct(scratch)
        out["models"] = {}
        for model in chosen:
            out["models"][model.name] = {
                name: regime(model, name, seeds, scratch, prompts) for name in args.regimes.split(",")
            }
            print(json.dumps({model.name: out["models"][model.name]}), flush=True)  # progress, for long runs
        if args.cost:
            out["best_of_cost"] = best_of_cost(scratch)
        out["seconds"] = round(time.monotonic() - started, 1)
        emit(out)


if __name__ == "__main__":
    main()
