"""Head-to-head between model versions from comparison verdicts (pure functions).

A comparison whose two sides came from different versions is a match: 1️⃣ / 2️⃣ is a
win for the side picked, 🤝 counts as half a win for each (the usual way to fold ties
into Bradley–Terry), 👎 (both bad) says nothing about which is better and is only
counted. Strengths come from the Bradley–Terry model, P(i beats j) = p_i / (p_i + p_j),
fitted with Hunter's MM iteration (2004): p_i <- W_i / sum_j n_ij / (p_i + p_j), where
W_i are i's wins and n_ij the games between i and j. ``prior`` adds that many virtual
games, split half and half, between every pair that met, so a version that never won
keeps a finite rating. Intervals are a percentile bootstrap over comparisons (a fixed
seed, so the same data gives the same interval).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bot.comparison import Verdict, verdict_of

DEFAULT_PRIOR = 1.0  # virtual games per pair of versions that met
DEFAULT_SAMPLES = 500  # bootstrap resamples


@dataclass(frozen=True)
class Match:
    """One comparison between two different versions: ``score`` is a's share (1, 0.5 or 0)."""

    a: int
    b: int
    score: float


def match_of(first_version: int, second_version: int, emoji: str) -> Match | None:
    """The match a verdict on (first, second) stands for; None for 👎, same versions or no verdict."""
    verdict = verdict_of(emoji)
    if first_version == second_version or verdict in (None, Verdict.BOTH_BAD):
        return None
    score = {Verdict.FIRST: 1.0, Verdict.SECOND: 0.0, Verdict.TIE: 0.5}[verdict]
    return Match(first_version, second_version, score)


def bradley_terry(
    matches: Iterable[Match], *, prior: float = 0.0, tolerance: float = 1e-10, max_iterations: int = 10_000
) -> dict[int, float]:
    """Bradley–Terry strengths by MM, scaled to sum to the number of versions.

    With ``prior=0`` a version without a win gets 0, and one without a loss grows
    without bound (the maximum-likelihood estimate does not exist); use a prior then.
    """
    return _fit(Counter(matches), prior=prior, tolerance=tolerance, max_iterations=max_iterations)


def _fit(
    counts: Mapping[Match, float], *, prior: float, tolerance: float = 1e-10, max_iterations: int = 10_000
) -> dict[int, float]:
    """Bradley–Terry from how many times each kind of match happened."""
    wins: dict[int, float] = defaultdict(float)
    games: dict[tuple[int, int], float] = defaultdict(float)
    for match, times in counts.items():
        if times <= 0:
            continue
        wins[match.a] += match.score * times
        wins[match.b] += (1.0 - match.score) * times
        games[(min(match.a, match.b), max(match.a, match.b))] += times
    for i, j in list(games):
        games[(i, j)] += prior
        wins[i] += prior / 2
        wins[j] += prior / 2
    players = sorted(wins)
    if not players:
        return {}
    opponents: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for (i, j), n in games.items():
        opponents[i].append((j, n))
        opponents[j].append((i, n))
    strength = dict.fromkeys(players, 1.0)
    for _ in range(max_iterations):
        updated = {}
        for i in players:
            denominator = sum(n / (strength[i] + strength[j]) for j, n in opponents[i] if strength[i] + strength[j] > 0)
            updated[i] = wins[i] / denominator if denominator > 0 else strength[i]
        scale = len(players) / sum(updated.values())
        updated = {i: value * scale for i, value in updated.items()}
        change = max(abs(updated[i] - strength[i]) for i in players)
        strength = updated
        if change < tolerance:
            break
    return strength


def rating(strength: float, anchor: float) -> float | None:
    """Elo-scale points relative to the anchor version: 400 log10(p / p_anchor)."""
    if strength <= 0 or anchor <= 0:
        return None
    return 400.0 * math.log10(strength / anchor)


def win_probability(strengths: dict[int, float], a: int, b: int) -> float | None:
    total = strengths.get(a, 0.0) + strengths.get(b, 0.0)
    return strengths[a] / total if total > 0 else None


@dataclass(frozen=True)
class VersionRating:
    version: int
    rating: float | None  # Elo-scale points, the lowest version = 0
    rating_low: float | None
    rating_high: float | None
    wins: float  # ties count half
    losses: float
    comparisons: int


@dataclass(frozen=True)
class PairResult:
    a: int
    b: int  # a < b
    a_wins: int
    b_wins: int
    ties: int
    both_bad: int
    a_beats_b: float | None  # Bradley–Terry P(a's answer is preferred), from all matches
    a_beats_b_low: float | None
    a_beats_b_high: float | None


@dataclass(frozen=True)
class HeadToHead:
    comparisons: int  # verdicts between two different versions (👎 included)
    same_version: int  # verdicts where both sides came from one version (not rated)
    versions: list[VersionRating]
    pairs: list[PairResult]
    method: str


def head_to_head(
    verdicts: Sequence[tuple[int, int, str]],
    *,
    prior: float = DEFAULT_PRIOR,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> HeadToHead:
    """Ratings and pairwise results from (first version, second version, verdict emoji)."""
    matches: list[Match] = []
    counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # a wins, b wins, ties, both bad
    same = cross = 0
    for first, second, emoji in verdicts:
        verdict = verdict_of(emoji)
        if verdict is None:
            continue
        if first == second:
            same += 1
            continue
        cross += 1
        a, b = min(first, second), max(first, second)
        row = counts[(a, b)]
        if verdict is Verdict.BOTH_BAD:
            row[3] += 1
            continue
        match = match_of(first, second, emoji)
        assert match is not None
        matches.append(match)
        if verdict is Verdict.TIE:
            row[2] += 1
        else:
            row[0 if (match.score == 1.0) == (match.a == a) else 1] += 1
    strengths = bradley_terry(matches, prior=prior)
    boot = _bootstrap(matches, prior=prior, samples=samples, seed=seed, start=strengths)
    anchor = min(strengths, default=0)  # ratings are relative to the oldest version compared
    tail = (1.0 - level) / 2

    versions = []
    for version in sorted(strengths):
        won = sum(m.score if m.a == version else 1 - m.score for m in matches if version in (m.a, m.b))
        played = sum(1 for m in matches if version in (m.a, m.b))
        points = [rating(s.get(version, 0.0), s.get(anchor, 0.0)) for s in boot]
        low, high = _percentiles([p for p in points if p is not None], tail)
        versions.append(
            VersionRating(
                version=version,
                rating=rating(strengths[version], strengths[anchor]),
                rating_low=low,
                rating_high=high,
                wins=won,
                losses=played - won,
                comparisons=played,
            )
        )
    pairs = []
    for (a, b), (a_wins, b_wins, ties, both_bad) in sorted(counts.items()):
        probabilities = [win_probability(s, a, b) for s in boot if a in s and b in s]
        low, high = _percentiles([p for p in probabilities if p is not None], tail)
        pairs.append(
            PairResult(
                a=a,
                b=b,
                a_wins=a_wins,
                b_wins=b_wins,
                ties=ties,
                both_bad=both_bad,
                a_beats_b=win_probability(strengths, a, b) if a in strengths and b in strengths else None,
                a_beats_b_low=low,
                a_beats_b_high=high,
            )
        )
    method = (
        f"Bradley–Terry (MM), ties as half wins, {prior:g} virtual game(s) per pair; "
        f"{level:.0%} percentile bootstrap over comparisons, {samples} resamples, seed {seed}"
    )
    return HeadToHead(comparisons=cross, same_version=same, versions=versions, pairs=pairs, method=method)


def _bootstrap(
    matches: Sequence[Match], *, prior: float, samples: int, seed: int, start: Mapping[int, float] | None = None
) -> list[dict[int, float]]:
    """Refits on resampled comparisons. A resample of n matches with replacement is a
    multinomial draw over the few kinds of match, so each costs the kinds, not n; and all
    resamples are fitted at once (batched Newton steps, `_fit_many`)."""
    if not matches or samples <= 0:
        return []
    tally = Counter(matches)
    kinds = list(tally)
    shares = np.array([tally[kind] for kind in kinds], dtype=float) / len(matches)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(matches), shares, size=samples).astype(float)
    return _fit_many(kinds, draws, prior=prior, start=start)


def _fit_many(
    kinds: Sequence[Match],
    times: np.ndarray,
    *,
    prior: float,
    start: Mapping[int, float] | None = None,
    tolerance: float = 1e-9,
    max_iterations: int = 100,
) -> list[dict[int, float]]:
    """The same Bradley–Terry maximum as :func:`_fit`, for many count vectors at once
    (``times``: samples × kinds): Newton's method on log-strengths, which converges in a
    handful of steps where MM crawls along a chain of versions (``python -m bench.headtohead``
    measures both). ``start``: strengths to begin from (the
    full data's fit; with a prior the maximum is unique). Strengths are scaled to sum to
    the number of versions, as `_fit` does."""
    players = sorted({m.a for m in kinds} | {m.b for m in kinds})
    index = {player: i for i, player in enumerate(players)}
    pairs = sorted({(min(index[m.a], index[m.b]), max(index[m.a], index[m.b])) for m in kinds})
    pair_of = {pair: k for k, pair in enumerate(pairs)}
    k_players, k_pairs, k_samples = len(players), len(pairs), times.shape[0]
    # Per sample and pair: games, and wins of the pair's first player (the prior: half a win each).
    to_pair = np.zeros((len(kinds), k_pairs))
    first_wins = np.zeros((len(kinds), k_pairs))
    for k, match in enumerate(kinds):
        i, j = index[match.a], index[match.b]
        pair = pair_of[(min(i, j), max(i, j))]
        to_pair[k, pair] = 1.0
        first_wins[k, pair] = match.score if i < j else 1.0 - match.score
    games = times @ to_pair + prior  # samples × pairs
    wins_first = times @ first_wins + prior / 2
    incidence = np.zeros((k_pairs, k_players))  # +1 for the pair's first player, -1 for its second
    for k, (i, j) in enumerate(pairs):
        incidence[k, i], incidence[k, j] = 1.0, -1.0
    wins = wins_first @ np.clip(incidence, 0, None) + (games - wins_first) @ np.clip(-incidence, 0, None)
    theta = np.zeros((k_samples, k_players))
    if start:
        theta += np.log([max(start.get(player, 1.0), 1e-12) for player in players])
    ridge = 1e-9 * np.eye(k_players - 1)  # a version compared with nobody connected to the anchor: no step
    for _ in range(max_iterations):
        p = 1.0 / (1.0 + np.exp(-(theta @ incidence.T)))  # P(first beats second), samples × pairs
        gradient = wins - (games * p) @ np.clip(incidence, 0, None) - (games * (1 - p)) @ np.clip(-incidence, 0, None)
        weight = games * p * (1 - p)
        hessian = -np.einsum("sp,pi,pj->sij", weight, incidence, incidence)  # the log-likelihood's, negative definite
        step = np.linalg.solve(-hessian[:, 1:, 1:] + ridge, gradient[:, 1:, None])[..., 0]
        theta[:, 1:] += step  # the first version stays the anchor (ratings are relative)
        if np.max(np.abs(step)) < tolerance:
            break
    strengths = np.exp(theta - theta.max(axis=1, keepdims=True))
    strengths *= k_players / strengths.sum(axis=1, keepdims=True)
    return [dict(zip(players, row.tolist(), strict=True)) for row in strengths]


def _percentiles(values: list[float], tail: float) -> tuple[float | None, float | None]:
    if not values:
        return (None, None)
    ordered = sorted(values)
    last = len(ordered) - 1
    return (_at(ordered, tail * last), _at(ordered, (1 - tail) * last))


def _at(ordered: list[float], position: float) -> float:
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
