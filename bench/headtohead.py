"""`python -m bench.headtohead [--quick]`: Bradley–Terry head to head on simulated verdicts.

Two versions; people prefer version 1 in 60 % of decisive verdicts, 10 % are ties and
10 % both bad, sides random, so the true P(version 0 preferred to 1) is 0.411. Reports
the time of one `head_to_head` (fit + 500-resample bootstrap) per data size and how
often the 95 % interval holds the true value (coverage, should be near 95 %).
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import emit
from bot.headtohead import head_to_head

TRUE_P0 = (0.8 * 0.4 + 0.1 * 0.5) / 0.9  # both-bad verdicts are not rated


def verdicts(n: int, rng: random.Random) -> list[tuple[int, int, str]]:
    out = []
    for _ in range(n):
        first, second = (0, 1) if rng.random() < 0.5 else (1, 0)
        r = rng.random()
        if r < 0.1:
            emoji = "🤝"
        elif r < 0.2:
            emoji = "👎"
        else:
            one_wins = rng.random() < 0.6
            emoji = ("1️⃣" if first == 1 else "2️⃣") if one_wins else ("2️⃣" if first == 1 else "1️⃣")
        out.append((first, second, emoji))
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer data sets for the coverage")
    args = parser.parse_args()
    rng = random.Random(0)
    timing = {}
    for n in (100, 1_000, 10_000, 100_000):
        data = verdicts(n, rng)
        started = time.perf_counter()
        result = head_to_head(data)
        pair = result.pairs[0]
        timing[str(n)] = {
            "seconds": round(time.perf_counter() - started, 3),
            "p0_beats_1": _rounded(pair.a_beats_b),
            "interval": [_rounded(pair.a_beats_b_low), _rounded(pair.a_beats_b_high)],
        }
    coverage = {}
    reps = 100 if args.quick else 300
    for n in (50, 200):
        hits = 0
        for rep in range(reps):
            pair = head_to_head(verdicts(n, rng), seed=rep).pairs[0]
            low, high = pair.a_beats_b_low, pair.a_beats_b_high
            hits += low is not None and high is not None and low <= TRUE_P0 <= high
        coverage[str(n)] = round(hits / reps, 3)
    emit({"true_p0_beats_1": round(TRUE_P0, 4), "by_comparisons": timing, "coverage_95": coverage, "data_sets": reps})


if __name__ == "__main__":
    main()
