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
- per run: which gate checks ran (``not_enough_data`` says which did not; perplexity,
  diversity and relevance run in every gate), published, rejected, published from an
  earlier checkpoint after the end of the run was rejected (``rescued``), the reward
  head's AUC with the number of held-out answers behind it; over the published versions,
  the largest top-answer share and the smallest distinct-2 relative to version 0;
- ``style``: no answers longer or blander to win approval. The mean length in words and the
  distinct-2 of the last version's answers and of every published version's (best-of-1, the
  same 96 questions and seed) over version 0's, and whether all stay within the margins:
  distinct-2 at least the gate's ``distinct_ratio`` (0.7) of version 0's, length at most
  1 / 0.7 = 1.43 x version 0's (the gate has no length check; ``WORDS_RATIO_MAX``). A seed
  whose people like 18 words or more asks for longer answers: ``outside`` names each seed's
  taste.

``votes_to_gain`` (varied model; ``--curve-regimes``, default dense): loops that train after
every round of a few prompts, each live version measured at best-of-1; the explicit votes
(reactions) cast before the first version 0.2 above version 0, per seed with its curve.
Dense: a run after every 64 votes, 8 rounds. Reply: a run after every 64 prompts (about 10
reactions), up to ``REPLY_CURVE_ROUNDS``, each seed twice with the same simulated people
(the same draws), the bot's implicit feedback on and off (``THUMBTUNE_IMPLICIT``); each
loop stops at its first version with the gain, and a seed that never reaches it counts as
more than the votes before its last run (the median and ``ratio_off_on``, off's median
over on's, then read "≥").

Seeds vary everything random: the simulated people and sampling, the base model (built
with the seed), the trainer (``THUMBTUNE_TRAIN_SEED``) and the people's rule, which
rotates with the seed: the tiny model (the shipped canned dialogues) over five words
(people like answers with "warm", "nice", "fresh", "quiet" or "happy"), the varied model
(make-tiny-model --varied) over three tastes that are properties of any sentence (a warm
tone, 18 words or more, on the question's topic). Regimes: dense (every answer voted by 2
people, no mistakes), sparse (40 % voted, by 1 person, 15 % of the votes flipped) and reply
(15 % voted by 1 person, 15 % flipped; the asker replies to half of the answers with a thanks
or a complaint, 15 % of them against their taste, asks the same again after 20 % of those
they dislike and in other words after 10 %; ``signal_agreement``: each implicit kind's
agreement with the people's true taste) and compare (the sparse regime's people with
THUMBTUNE_COMPARE=auto at a share of 0.25: the voter of an answer shown as a comparison
gives a verdict). ``compare_auto`` (``--compare``): comparison votes the reward model
needs, auto against at random (bench.comparisons).
Medians with the range across seeds (``[min, max]``, and how many seeds had the figure).
Also ``varied_model``: distinct answers of the varied model (seed 0) to 100 benchmark
questions. ``--learning-rate`` / ``--epochs`` try other training settings. Prints one
JSON object on its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import emit, quick_args
from bench.comparisons import compare_auto
from bot.dialoguegen import benchmark_questions
from bot.generation import SamplingParams, load_model
from bot.generation.decoding import sample
from bot.settings import CompareMode
from bot.simulate import (
    QUESTIONS,
    VARIED_MAX_NEW_TOKENS,
    SimulationOptions,
    SimulationResult,
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
from trainer.config import GateConfig
from trainer.evaluate import distinct_n, sample_answers
from trainer.models import load_causal_lm
from trainer.reward import fit_reward

# (vote share, voters per answer, noise)
REGIMES: dict[str, tuple[float, int, float]] = {
    "dense": (1.0, 2, 0.0),
    "sparse": (0.4, 1, 0.15),
    "reply": (0.15, 1, 0.15),  # few react; what people do anyway (IMPLICIT) carries the rest
    "compare": (0.4, 1, 0.15),  # the sparse regime's people, some answers shown as comparisons (COMPARE)
}
# Regimes where people also reply (bot.implicit): (reply share, replies against their taste,
# retry share of disliked answers, rephrase share of disliked answers).
IMPLICIT: dict[str, tuple[float, float, float, float]] = {"reply": (0.5, 0.15, 0.2, 0.1)}
# Regimes with THUMBTUNE_COMPARE: (mode, share); a voter gives a comparison their verdict.
COMPARE: dict[str, tuple[CompareMode, float]] = {"compare": ("auto", 0.25)}
BEST_OF = 4
MEASURE = 96  # answers per measurement
# votes_to_gain, (prompts per round, rounds) by regime: dense loops train after every 64 votes
# (2 voters on each of 32 answers), 8 times. (Sparse loops would need 160 prompts a round for
# as many votes: the main loops' three rounds of ~51 votes say how far they get.) Reply loops,
# with the bot's implicit feedback on and off, train after every 64 prompts (~10 reactions,
# ~32 replies and a few retries); REPLY_CURVE_ROUNDS is set by what 5 seeds x 2 cost.
CURVE_PROMPTS, CURVE_ROUNDS = 32, 8
REPLY_CURVE_PROMPTS, REPLY_CURVE_ROUNDS = 64, 16
CURVES: dict[str, tuple[int, int]] = {
    "dense": (CURVE_PROMPTS, CURVE_ROUNDS),
    "reply": (REPLY_CURVE_PROMPTS, REPLY_CURVE_ROUNDS),
}
# The varied model's simulated tastes, properties of any sentence; their shares of version
# 0's answers liked (seed 0, 160 answers): warm tone 26 %, 18 words or more 26 %, on the
# question's topic and no other 9 % (python -m bench.learning prints each seed's version_0).
VARIED_TASTES: tuple[tuple[Taste, str], ...] = (("warm", ""), ("long", ""), ("relevant", ""))
# No answers longer or blander to win approval. The gate rejects a distinct-2 under
# distinct_ratio x version 0's; it has no length check, so the bench holds the mean length
# in words to the same margin turned round: at most 1 / distinct_ratio x version 0's.
DISTINCT_2_RATIO_MIN = GateConfig().distinct_ratio
WORDS_RATIO_MAX = round(1 / DISTINCT_2_RATIO_MIN, 2)


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    spec: TinyModelSpec
    rules: tuple[tuple[Taste, str], ...]  # (taste, word) of the simulated people, one per seed in turn
    questions: tuple[str, ...]
    held_out: tuple[str, ...]
    max_new_tokens: int

    def rule(self, seed: int) -> tuple[Taste, str]:
        return self.rules[seed % len(self.rules)]


def models() -> list[Model]:
    trained, held_out = varied_questions()
    # The tiny model's words each start in 7-11 % of its answers (bot/data/dialogues.txt).
    words: tuple[tuple[Taste, str], ...] = tuple(("word", w) for w in ("warm", "nice", "fresh", "quiet", "happy"))
    return [
        Model("tiny", TinyModelSpec(), words, QUESTIONS, (), SimulationOptions.max_new_tokens),
        Model("varied", VARIED, VARIED_TASTES, trained, held_out, VARIED_MAX_NEW_TOKENS),
    ]


def sampled(
    folder: Path,
    model: Model,
    questions: list[str],
    *,
    seed: int,
    head: RewardHead | None = None,
) -> dict[int, list[str]]:
    """The answers of the model in ``folder`` to ``questions``, with 1 and (given ``head``)
    ``BEST_OF`` candidates ranked by ``head``; sampling seeded by ``seed``."""
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
        out[n] = [r.texts[0] for r in results]
    return out


def approval(model: Model, questions: list[str], answers: list[str], *, seed: int) -> float:
    """The share of ``answers`` the seed's simulated people like."""
    taste, word = model.rule(seed)
    liked = [likes(taste, q, a, prefer=word) for q, a in zip(questions, answers, strict=True)]
    return round(sum(liked) / len(liked), 4)


def approvals(
    folder: Path,
    model: Model,
    questions: list[str],
    *,
    seed: int,
    head: RewardHead | None = None,
) -> dict[int, float]:
    """Approval of the model in ``folder`` with 1 and ``BEST_OF`` candidates ranked by ``head``,
    by the seed's simulated people."""
    answers = sampled(folder, model, questions, seed=seed, head=head)
    return {n: approval(model, questions, texts, seed=seed) for n, texts in answers.items()}


def style(answers: list[str]) -> dict[str, float]:
    """Mean answer length in words, and distinct-2 (the gate's measure of variety)."""
    return {
        "words": round(statistics.mean(len(a.split()) for a in answers), 2),
        "distinct_2": round(distinct_n(answers), 4),
    }


def style_against(answers: list[str], zero: dict[str, float]) -> dict[str, Any]:
    """:func:`style` of ``answers`` over version 0's (``zero``), and whether both ratios are
    within ``WORDS_RATIO_MAX`` and ``DISTINCT_2_RATIO_MIN``."""
    mine = style(answers)
    words = round(mine["words"] / zero["words"], 3)
    distinct = round(mine["distinct_2"] / zero["distinct_2"], 3)
    return {
        **mine,
        "words_ratio": words,
        "distinct_2_ratio": distinct,
        "within": words <= WORDS_RATIO_MAX and distinct >= DISTINCT_2_RATIO_MIN,
    }


def last_snapshot(data_dir: Path) -> str | None:
    runs = sorted((data_dir / "artifacts" / "runs").glob("*"))
    return str(runs[-1]) if runs else None


@dataclasses.dataclass(frozen=True)
class Loop:
    """One simulated loop: who votes how (``regime``), how often it trains, how it trains."""

    regime: str
    rounds: int
    prompts: int  # per round
    learning_rate: float | None = None  # None: the bot's defaults
    epochs: float | None = None
    implicit: bool = True  # THUMBTUNE_IMPLICIT; off, people reply and retry all the same, unread


def simulated(
    model: Model,
    loop: Loop,
    seed: int,
    base: Path,
    data_dir: Path,
    *,
    held_out: bool,
    stop: Callable[[int], bool] | None = None,
) -> SimulationResult:
    """``thumbtune simulate`` at best-of-1, people, sampling, base model and trainer all seeded
    by ``seed``; ``stop`` as bot.simulate.simulate's."""
    vote_share, voters, noise = REGIMES[loop.regime]
    reply_share, reply_noise, retry_share, rephrase_share = IMPLICIT.get(loop.regime, (0.0, 0.0, 0.0, 0.0))
    compare, compare_share = COMPARE.get(loop.regime, ("off", 0.0))
    taste, word = model.rule(seed)
    options = SimulationOptions(
        users=8,
        rounds=loop.rounds,
        prompts=loop.prompts,
        prefer=word,
        taste=taste,
        questions=model.questions,
        held_out_questions=model.held_out if held_out else (),
        max_new_tokens=model.max_new_tokens,
        seed=seed,
        train_seed=seed,
        model=base,
        vote_share=vote_share,
        voters_per_answer=voters,
        noise=noise,
        reply_share=reply_share,
        reply_noise=reply_noise,
        retry_share=retry_share,
        rephrase_share=rephrase_share,
        best_of=1,
        data_dir=data_dir,
        learning_rate=loop.learning_rate,
        epochs=loop.epochs,
        implicit=loop.implicit,
        compare=compare,
        compare_share=compare_share,
    )
    return run_simulation(options, stop=stop)


def measured_questions(model: Model, seed: int) -> list[str]:
    rng = random.Random(1000 + seed)
    return [rng.choice(model.questions) for _ in range(MEASURE)]


def one_seed(model: Model, loop: Loop, seed: int, base: Path, scratch: Path) -> dict[str, Any]:
    data_dir = scratch / f"{model.name}-{loop.regime}-{seed}"
    report = simulated(model, loop, seed, base, data_dir, held_out=True)
    versions = report["versions"]
    asked = measured_questions(model, seed)
    registry = ModelRegistry(data_dir / "models")
    last = registry.current_version()
    zero_answers = sampled(base, model, asked, seed=seed)[1]
    zero = approval(model, asked, zero_answers, seed=seed)
    taste, word = model.rule(seed)
    result: dict[str, Any] = {
        "seed": seed,
        "taste": taste if taste != "word" else f"word {word}",
        "version_0": zero,
        "versions": [
            {k: v.get(k) for k in ("version", "approval", "held_out_approval", "distinct_answers", "top_answer_share")}
            for v in versions
        ],
        "runs": [],
        "signals": report.get("signals", {}),  # each implicit kind's agreement with the people's true taste
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
                "chrf": metrics.get("chrf"),  # None: no held-out corrections (simulated people never correct)
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
    last_answers = zero_answers  # version 0's while nothing was published
    if last:
        folder = registry.get(last).path
        head = RewardHead.load(folder)
        answers = sampled(folder, model, asked, seed=seed, head=head)
        measured = {n: approval(model, asked, texts, seed=seed) for n, texts in answers.items()}
        result["training"] = round(measured[1] - zero, 4)
        last_answers = answers[1]
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
    # Longer or blander answers than version 0's, to win approval? Measured last: its
    # sampling reseeds torch, and nothing after it samples.
    result["style"] = published_style(registry, model, asked, seed=seed, last=last_answers, zero=zero_answers)
    # Held-out questions are asked in the last round only, of the last live version: its
    # approval on them minus on the trained questions (the same round, the same people).
    held, trained = versions[-1].get("held_out_approval"), versions[-1].get("approval")
    if model.held_out and held is not None and trained is not None:
        result["held_out"] = round(held - trained, 4)
    return result


def published_style(
    registry: ModelRegistry, model: Model, asked: list[str], *, seed: int, last: list[str], zero: list[str]
) -> dict[str, Any]:
    """Length and distinct-2 of the last version's answers (``last``) and of every published
    version's, over version 0's (``zero``), all at best-of-1 on the same questions and seed;
    ``worst``: the longest and the least varied of the published versions (each its own)."""
    current = registry.current_version()
    base = style(zero)
    found = {current: style_against(last, base)}
    for version in registry.versions():
        if version.status == "published" and version.version not in found:
            found[version.version] = style_against(sampled(version.path, model, asked, seed=seed)[1], base)
    return {
        "version_0": base,
        "last": {"version": current, **found[current]},
        "worst": {
            "words_ratio": max(s["words_ratio"] for s in found.values()),
            "distinct_2_ratio": min(s["distinct_2_ratio"] for s in found.values()),
            "within": all(s["within"] for s in found.values()),
        },
    }


def summary(values: list[float | None]) -> dict[str, Any] | None:
    have = [v for v in values if v is not None]
    if not have:
        return None
    return {"median": round(statistics.median(have), 4), "range": [min(have), max(have)], "seeds": len(have)}


def base_model(model: Model, seed: int, scratch: Path) -> Path:
    base = scratch / f"{model.name}-base-{seed}"
    if not (base / "config.json").exists():
        make_tiny_model(base, dataclasses.replace(model.spec, seed=seed))
    return base


def regime(model: Model, loop: Loop, seeds: list[int], scratch: Path) -> dict[str, Any]:
    started = time.monotonic()
    per_seed = [one_seed(model, loop, seed, base_model(model, seed, scratch), scratch) for seed in seeds]
    runs = [run for s in per_seed for run in s["runs"]]
    # Perplexity, diversity and relevance run in every gate; these two need held-out data.
    checks: Counter[str] = Counter()
    for run in runs:
        checks["gate_runs"] += 1
        skipped = " ".join(run["not_enough_data"])
        checks["preference_check_ran"] += "held-out preference" not in skipped
        checks["chrf_check_ran"] += run["chrf"] is not None and "chrF" not in skipped
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
        # distinct-2 of each published version's answers over version 0's (the gate's floor: distinct_ratio)
        "min_distinct_2_ratio_published": min(
            (
                round(run["distinct_2"] / run["base_distinct_2"], 3)
                for run in published
                if run["distinct_2"] is not None and run["base_distinct_2"]
            ),
            default=None,
        ),
        "reward_heads_ranking": sum(bool(run["reward_ranks"]) for run in runs),
        "signal_agreement": {
            kind: summary([s["signals"].get(kind, {}).get("agreement") for s in per_seed])
            for kind in sorted({kind for s in per_seed for kind in s["signals"]})
        },
        "style": style_summary(per_seed),
        "seeds": per_seed,
        "seconds": round(time.monotonic() - started, 1),
    }


def style_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds: the last and the worst published version's mean length and distinct-2
    over version 0's, against the margins (``WORDS_RATIO_MAX``, ``DISTINCT_2_RATIO_MIN``), and
    the seeds outside them with their taste (a taste for long answers asks for longer ones)."""
    styles = [s["style"] for s in per_seed]
    return {
        "words_ratio_max": WORDS_RATIO_MAX,
        "distinct_2_ratio_min": DISTINCT_2_RATIO_MIN,
        **{
            f"{which}_{ratio}": summary([st[which][ratio] for st in styles])
            for which in ("last", "worst")
            for ratio in ("words_ratio", "distinct_2_ratio")
        },
        "seeds_within": sum(st["worst"]["within"] for st in styles),
        "outside": [
            {"seed": s["seed"], "taste": s["taste"], **{k: v for k, v in s["style"]["worst"].items() if k != "within"}}
            for s in per_seed
            if not s["style"]["worst"]["within"]
        ],
    }


def gain_curve(model: Model, loop: Loop, seed: int, scratch: Path, *, gain: float, stop_early: bool) -> dict[str, Any]:
    """One seed's loop in small rounds: each live version's approval over version 0's (best-of-1,
    the seed's ``MEASURE`` questions) against the explicit votes (reactions, not replies or
    retries) cast before it went live, and the first such count with ``gain`` (``votes``; None:
    no version reached it within ``budget``, the votes before the loop's last run).

    ``stop_early``: the loop ends at the first version that reaches ``gain``. Rounds after it
    cannot change the count, and each measurement keeps torch's random state out of the loop's,
    so the versions before it are the ones a loop to the end would make."""
    base = base_model(model, seed, scratch)
    switch = "" if loop.implicit else "no-implicit-"
    data_dir = scratch / f"{model.name}-{loop.regime}-{switch}curve-{seed}"
    asked = measured_questions(model, seed)
    zero = approvals(base, model, asked, seed=seed)[1]
    gains: dict[int, float] = {}

    def gained(version: int) -> float:
        if version not in gains:
            folder = ModelRegistry(data_dir / "models").get(version).path
            with torch.random.fork_rng(devices=[]):  # the loop's own sampling goes on as if unmeasured
                gains[version] = round(approvals(folder, model, asked, seed=seed)[1] - zero, 4)
        return gains[version]

    def reached(version: int) -> bool:
        return gained(version) >= gain

    report = simulated(model, loop, seed, base, data_dir, held_out=False, stop=reached if stop_early else None)
    curve: list[tuple[int, float]] = [(0, 0.0)]  # (votes before the version went live, its gain)
    curve += [(version["votes_before"], gained(version["version"])) for version in report["versions"][1:]]
    runs = report["runs"]
    taste, word = model.rule(seed)
    return {
        "seed": seed,
        "taste": taste if taste != "word" else f"word {word}",
        "votes": next((votes for votes, gained_then in curve[1:] if gained_then >= gain), None),
        "curve": curve,
        "votes_cast": report["votes"],
        "budget": runs[-1]["votes_before"] if runs else 0,
        "runs": len(runs),
        "signals": sum(kind["signals"] for kind in report["signals"].values()),  # implicit, stored
    }


def votes_to_gain(
    model: Model, loop: Loop, seeds: list[int], scratch: Path, *, gain: float = 0.2, stop_early: bool = False
) -> dict[str, Any]:
    """Votes cast before the first version that gains ``gain`` over version 0, in small rounds.

    Each loop trains after every round of ``loop.prompts`` prompts (about 64 votes in
    either regime), so the count moves in steps of a small round, not of the main loops'
    128 prompts. Every live version is measured on the seed's ``MEASURE`` questions at
    best-of-1; ``None``: no version reached the gain within the loop's votes.
    """
    started = time.monotonic()
    per_seed = [gain_curve(model, loop, seed, scratch, gain=gain, stop_early=stop_early) for seed in seeds]
    # A seed that never reached the gain counts as more votes than any that did (None: most did not).
    middle = statistics.median_high([math.inf if s["votes"] is None else s["votes"] for s in per_seed])
    return {
        "gain": gain,
        "round_prompts": loop.prompts,
        "median": None if middle == math.inf else middle,
        "reached": sum(s["votes"] is not None for s in per_seed),
        "seeds": per_seed,
        "seconds": round(time.monotonic() - started, 1),
    }


def bounded_median(per_seed: list[dict[str, Any]]) -> tuple[int, bool]:
    """The median (the higher middle) of the seeds' votes to the gain, a seed that never reached
    it counting as its budget; True when that makes the median a lower bound (the true count
    of such a seed is more than its budget)."""
    counts = [s["budget"] if s["votes"] is None else s["votes"] for s in per_seed]
    middle = statistics.median_high(counts)
    return middle, any(s["votes"] is None and s["budget"] <= middle for s in per_seed)


def at_least(value: float, bound: bool) -> str:
    return f"{'≥ ' if bound else ''}{value:g}"


def implicit_votes_to_gain(
    model: Model, loop: Loop, seeds: list[int], scratch: Path, *, gain: float = 0.2
) -> dict[str, Any]:
    """:func:`votes_to_gain` of ``loop``'s regime twice on each seed, the same simulated people
    (the same draws) with the bot's implicit feedback on and off: explicit votes (reactions)
    to the gain, and how many more it takes off than on. Each loop stops at the gain."""
    started = time.monotonic()
    switches = {"implicit_on": True, "implicit_off": False}
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in switches}
    for seed in seeds:
        for name, implicit in switches.items():
            switched = dataclasses.replace(loop, implicit=implicit)
            per_seed[name].append(gain_curve(model, switched, seed, scratch, gain=gain, stop_early=True))
        print(json.dumps({"votes_to_gain_seed": {n: runs[-1] for n, runs in per_seed.items()}}), flush=True)
    out: dict[str, Any] = {"gain": gain, "round_prompts": loop.prompts, "rounds": loop.rounds}
    medians = {}
    for name, found in per_seed.items():
        medians[name] = bounded_median(found)
        out[name] = {
            "median": medians[name][0],
            "median_is_lower_bound": medians[name][1],
            "reached": sum(s["votes"] is not None for s in found),
            "seeds": found,
        }
    (on, on_bound), (off, off_bound) = medians["implicit_on"], medians["implicit_off"]
    # Off over on: a lower bound when off's median is one; unknown when on's is one too.
    out["ratio_off_on"] = None if on_bound or not on else round(off / on, 2)
    out["ratio_off_on_is_lower_bound"] = off_bound
    out["ratio_off_on_text"] = None if out["ratio_off_on"] is None else at_least(out["ratio_off_on"], off_bound)
    out["seed_ratios"] = [
        {
            "seed": on_seed["seed"],
            "on": on_seed["votes"],
            "off": at_least(off_seed["budget"], True) if off_seed["votes"] is None else off_seed["votes"],
            "ratio": None
            if on_seed["votes"] is None
            else at_least(
                round((off_seed["votes"] or off_seed["budget"]) / on_seed["votes"], 2), off_seed["votes"] is None
            ),
        }
        for on_seed, off_seed in zip(per_seed["implicit_on"], per_seed["implicit_off"], strict=True)
    ]
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def varied_model_distinct(varied: Model, scratch: Path) -> dict[str, Any]:
    """Distinct answers of the varied model (seed 0) to 100 benchmark questions."""
    started = time.monotonic()
    base = base_model(varied, 0, scratch)  # the same folder seed 0's loops use
    built = round(time.monotonic() - started, 1)
    lm, tokenizer = load_causal_lm(base, device=torch.device("cpu"))
    answers = sample_answers(
        lm,
        tokenizer,
        [render_prompt(q) for q in benchmark_questions(100)],
        max_new_tokens=varied.max_new_tokens,
        seed=0,
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
    def more(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--models", default="tiny,varied", help="which test models (default tiny,varied)")
        parser.add_argument("--regimes", default="dense,sparse", help="dense, sparse, reply (default dense,sparse)")
        parser.add_argument("--cost", action="store_true", help="also best_of_cost: ms per answer for n = 1, 2, 4, 8")
        parser.add_argument(
            "--no-curve", action="store_true", help="skip votes_to_gain (the varied model's small-round loops)"
        )
        parser.add_argument("--curve-only", action="store_true", help="only votes_to_gain (and varied_model)")
        parser.add_argument(
            "--curve-regimes",
            help=(
                "votes_to_gain's regimes: dense (a run every 64 votes), reply (implicit feedback on and off, "
                "a run every 64 prompts); default dense when --regimes has it"
            ),
        )
        parser.add_argument("--curve-rounds", type=int, help="rounds of each votes_to_gain loop (default: by regime)")
        parser.add_argument(
            "--compare",
            action="store_true",
            help="also compare_auto: comparison votes the reward model needs, THUMBTUNE_COMPARE=auto vs at random",
        )
        parser.add_argument("--compare-only", action="store_true", help="only compare_auto (and varied_model)")
        parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 5; --quick 2)")
        parser.add_argument("--prompts", type=int, help="prompts per round (default 128; --quick 64)")
        parser.add_argument("--learning-rate", type=float, help="THUMBTUNE_TRAIN_LEARNING_RATE (default: the bot's)")
        parser.add_argument("--epochs", type=float, help="THUMBTUNE_TRAIN_EPOCHS (default: the bot's)")

    args = quick_args(__doc__ or "", "2 seeds of 64 prompts per round instead of 5 of 128", more)
    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    prompts = args.prompts or (64 if args.quick else 128)
    chosen = [m for m in models() if m.name in args.models.split(",")]
    regimes = args.regimes.split(",")
    tuning = {"learning_rate": args.learning_rate, "epochs": args.epochs}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        scratch = Path(tmp)
        out: dict[str, Any] = {"seeds": seeds, "prompts_per_round": prompts, "best_of": BEST_OF, **tuning}
        varied = next((m for m in chosen if m.name == "varied"), None)
        if varied is not None:
            out["varied_model"] = varied_model_distinct(varied, scratch)
        if varied is not None and (args.compare or args.compare_only):
            bases = {seed: base_model(varied, seed, scratch) for seed in seeds}
            rules = {seed: varied.rule(seed) for seed in seeds}
            out["compare_auto"] = compare_auto(seeds, bases, rules, varied.questions, varied.max_new_tokens)
            print(json.dumps({"compare_auto": out["compare_auto"]}), flush=True)
        out["models"] = {}
        for model in [] if args.curve_only or args.compare_only else chosen:
            out["models"][model.name] = {
                name: regime(model, Loop(name, 3, prompts, **tuning), seeds, scratch) for name in regimes
            }
            print(json.dumps({model.name: out["models"][model.name]}), flush=True)  # progress, for long runs
        curves = args.curve_regimes.split(",") if args.curve_regimes else [r for r in regimes if r == "dense"]
        if varied is not None and curves and not (args.no_curve or args.compare_only):
            out["votes_to_gain"] = {}
            for name in curves:
                curve_prompts, curve_rounds = CURVES[name]
                curve = Loop(name, args.curve_rounds or curve_rounds, curve_prompts, **tuning)
                count = implicit_votes_to_gain if name in IMPLICIT else votes_to_gain
                out["votes_to_gain"][name] = count(varied, curve, seeds, scratch)
        if args.cost:
            out["best_of_cost"] = best_of_cost(scratch)
        out["seconds"] = round(time.monotonic() - started, 1)
        emit(out)


if __name__ == "__main__":
    main()
