"""Bradley–Terry head-to-head: worked examples computed by hand."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from bot.headtohead import Match, bradley_terry, head_to_head, match_of, rating


def _games(a: int, b: int, a_wins: int, b_wins: int) -> list[Match]:
    return [Match(a, b, 1.0)] * a_wins + [Match(a, b, 0.0)] * b_wins


def test_two_versions_closed_form():
    # 3 wins to 1: p0 / (p0 + p1) = 3/4, so p0 = 3 p1; scaled to sum 2: (1.5, 0.5).
    strengths = bradley_terry(_games(0, 1, 3, 1))
    assert strengths == {0: pytest.approx(1.5), 1: pytest.approx(0.5)}
    # Elo scale: 400 log10(1/3) = -190.85 points for version 1 against version 0.
    assert rating(strengths[1], strengths[0]) == pytest.approx(-190.849, abs=1e-3)


def test_three_versions_with_consistent_results():
    # 2 of 3, 2 of 3 and 4 of 5 are exactly what p = (4, 2, 1) predicts (4/6, 2/3, 4/5),
    # so that is the maximum-likelihood fit; scaled to sum 3: (12/7, 6/7, 3/7).
    matches = _games(2, 1, 2, 1) + _games(1, 0, 2, 1) + _games(2, 0, 4, 1)
    strengths = bradley_terry(matches)
    assert strengths[2] == pytest.approx(12 / 7, abs=1e-6)
    assert strengths[1] == pytest.approx(6 / 7, abs=1e-6)
    assert strengths[0] == pytest.approx(3 / 7, abs=1e-6)


def test_ties_are_half_wins_and_the_prior_keeps_a_winless_version_finite():
    # 1 win, 1 loss and 2 ties: 2 of 4 each, equal strength.
    even = bradley_terry(_games(0, 1, 1, 1) + [Match(0, 1, 0.5)] * 2)
    assert even == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    # 3 to 0 with one virtual game split half/half: W = (3.5, 0.5) of 4, so p1/p0 = 7.
    strengths = bradley_terry(_games(1, 0, 3, 0), prior=1.0)
    assert strengths[1] / strengths[0] == pytest.approx(7.0)
    assert bradley_terry(_games(1, 0, 3, 0))[0] == pytest.approx(0.0, abs=1e-6)


def test_verdicts_become_matches():
    assert match_of(0, 1, "1️⃣") == Match(0, 1, 1.0)
    assert match_of(1, 0, "two") == Match(1, 0, 0.0)
    assert match_of(0, 1, "🤝") == Match(0, 1, 0.5)
    assert match_of(0, 1, "👎") is None and match_of(1, 1, "1️⃣") is None


def test_head_to_head_report_counts_and_interval():
    # Version 1 shown second 6 times and first 3 times; it wins 6, loses 2, 1 tie; 2 both bad.
    verdicts = (
        [(0, 1, "2️⃣")] * 4
        + [(1, 0, "1️⃣")] * 2
        + [(0, 1, "1️⃣")] * 2
        + [(1, 0, "🤝")]
        + [(0, 1, "👎")] * 2
        + [(1, 1, "1️⃣")] * 5
    )
    report = head_to_head(verdicts, prior=0.0, samples=300, seed=7)
    assert (report.comparisons, report.same_version) == (11, 5)
    [pair] = report.pairs
    assert (pair.a, pair.b, pair.a_wins, pair.b_wins, pair.ties, pair.both_bad) == (0, 1, 2, 6, 1, 2)
    # 6.5 of 9 for version 1: P(0 beats 1) = 2.5 / 9.
    assert pair.a_beats_b == pytest.approx(2.5 / 9, abs=1e-6)
    assert pair.a_beats_b_low < pair.a_beats_b < pair.a_beats_b_high
    by_version = {v.version: v for v in report.versions}
    assert by_version[0].rating == 0.0
    assert by_version[1].rating == pytest.approx(400 * math.log10(6.5 / 2.5), abs=1e-3)
    assert (by_version[1].wins, by_version[1].losses, by_version[1].comparisons) == (6.5, 2.5, 9)
    assert by_version[1].rating_low < by_version[1].rating < by_version[1].rating_high
    again = head_to_head(verdicts, prior=0.0, samples=300, seed=7)
    assert again == report  # a fixed seed gives the same interval
    assert head_to_head([]).versions == [] and head_to_head([]).pairs == []


def test_the_batched_bootstrap_fit_finds_the_same_maximum_as_mm():
    """Newton on many resamples at once (the bootstrap) agrees with the MM fit, one by one."""
    import numpy as np

    from bot.headtohead import _fit, _fit_many

    rng = random.Random(3)
    matches = []
    for _ in range(400):  # a chain of 7 versions, neighbours and next-but-one compared
        a = rng.randrange(6)
        matches.append(Match(a, min(6, a + 1 + rng.randrange(2)), rng.choice([1.0, 0.0, 0.0, 0.5])))
    tally = Counter(matches)
    kinds = list(tally)
    shares = np.array([tally[kind] for kind in kinds], dtype=float) / len(matches)
    draws = np.random.default_rng(0).multinomial(len(matches), shares, size=25).astype(float)
    for row, fitted in zip(draws, _fit_many(kinds, draws, prior=1.0), strict=True):
        slow = _fit(dict(zip(kinds, row.tolist(), strict=True)), prior=1.0, tolerance=1e-13, max_iterations=500_000)
        assert fitted.keys() == slow.keys()
        for version, strength in slow.items():
            assert fitted[version] == pytest.approx(strength, rel=1e-8)
