"""`python -m bench.learning [--quick]`: does the loop learn from the votes people give?

`thumbtune simulate` (the tiny model, the simulation's training defaults, 8 people, 3
runs of 128 prompts) over 5 seeds (3 with ``--quick``) in two regimes of feedback:

- dense: every answer voted by 2 people, no mistakes;
- sparse: 40 % of the answers voted, by 1 person, 15 % of the votes flipped.

Prints one JSON object ``{"regimes": {"dense": {...}, "sparse": {...}}}``; per regime:
``gain_median`` and ``gain_min`` (approval of the last live version minus version 0's,
after 3 runs), ``votes_to_gain_0_2_median`` (votes cast until the live version's
approval first reached version 0's + 0.2, median over the seeds; null when half or more
never got there), ``published``, ``rejected``, ``stalls`` (seeds whose runs end in 2 or
more rejections in a row), ``drifted`` (published versions whose reference perplexity is
beyond the gate's ratio of version 0's), the per-seed gains and ``seconds``. The
reward-model fields the issue asks for (``reward_auc_median``, ``best_of_approval``,
``votes_to_gain_0_2_median_best_of_1``) are null: there is no reward model yet.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import emit, quick_args
from bot.simulate import SimulationOptions, run_simulation
from bot.tinymodel import make_tiny_model
from trainer.config import GateConfig

# (vote share, voters per answer, noise)
REGIMES: dict[str, tuple[float, int, float]] = {"dense": (1.0, 2, 0.0), "sparse": (0.4, 1, 0.15)}
GAIN = 0.2


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


def regime(name: str, seeds: list[int], model: Path) -> dict:
    started = time.monotonic()
    gains, votes_needed, published, rejected, stalls, drift = [], [], 0, 0, 0, 0
    vote_share, voters, noise = REGIMES[name]
    for seed in seeds:
        options = SimulationOptions(
            users=8,
            rounds=3,
            prompts=128,
            seed=seed,
            model=model,
            vote_share=vote_share,
            voters_per_answer=voters,
            noise=noise,
        )
        report = run_simulation(options)
        versions, runs = report["versions"], report["runs"]
        gains.append(round((versions[-1]["approval"] or 0.0) - (versions[0]["approval"] or 0.0), 4))
        votes_needed.append(votes_to_gain(versions))
        published += sum(run["status"] == "published" for run in runs)
        rejected += sum(run["status"] == "rejected" for run in runs)
        stalls += stalled(runs)
        drift += drifted(versions)
    reached = [votes for votes in votes_needed if votes is not None]
    return {
        "gain_median": round(statistics.median(gains), 4),
        "gain_min": min(gains),
        "gains": gains,
        "votes_to_gain_0_2_median": statistics.median(reached) if len(reached) * 2 > len(seeds) else None,
        "votes_to_gain_0_2": votes_needed,
        "votes_to_gain_0_2_median_best_of_1": None,
        "published": published,
        "rejected": rejected,
        "stalls": stalls,
        "drifted": drift,
        "reward_auc_median": None,
        "best_of_approval": None,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    args = quick_args(__doc__ or "", "3 seeds instead of 5")
    seeds = list(range(3 if args.quick else 5))
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        model = make_tiny_model(Path(tmp) / "tiny")
        emit({"seeds": seeds, "regimes": {name: regime(name, seeds, model) for name in REGIMES}})


if __name__ == "__main__":
    main()
