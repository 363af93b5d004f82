"""bench.learning's votes-to-gain loops: measuring each version inside the loop changes nothing."""

from __future__ import annotations

from pathlib import Path


def test_a_curve_measured_inside_the_loop_is_the_curve_measured_after_it(tmp_path: Path) -> None:
    """With ``stop_early`` each live version is measured (sampled) while the loop runs; with a
    gain no version reaches, it never stops, so its curve must be the one measured afterwards."""
    from bench.learning import Loop, gain_curve, models

    tiny = models()[0]
    loop = Loop("sparse", rounds=2, prompts=16)
    inside = gain_curve(tiny, loop, 0, tmp_path / "a", gain=2.0, stop_early=True)
    after = gain_curve(tiny, loop, 0, tmp_path / "b", gain=2.0, stop_early=False)
    assert len(inside["curve"]) > 1  # a version went live and was measured
    assert inside == after
    assert inside["votes"] is None and inside["runs"] == 2


def test_stop_ends_the_loop_at_the_first_live_version(tmp_path: Path) -> None:
    from bench.learning import Loop, gain_curve, models

    tiny = models()[0]
    stopped = gain_curve(tiny, Loop("dense", rounds=3, prompts=16), 0, tmp_path, gain=-1.0, stop_early=True)
    assert stopped["votes"] == stopped["curve"][1][0] > 0  # any version "gains" -1
    assert len(stopped["curve"]) == 2  # no version after it


def test_votes_to_reach_interpolates_between_the_curves_points() -> None:
    from bench.comparisons import votes_to_reach

    curve: list[tuple[int, float | None]] = [(10, None), (20, 0.6), (40, 0.8), (60, 0.7), (80, 0.9)]
    assert votes_to_reach(curve, 0.7) == 30.0  # halfway from 0.6 at 20 votes to 0.8 at 40
    assert votes_to_reach(curve, 0.5) == 20.0  # reached at its first AUC
    assert votes_to_reach(curve, 0.95) is None and votes_to_reach(curve, None) is None


def test_compare_auto_runs_both_choosers_on_the_same_stream(tmp_path: Path, monkeypatch) -> None:
    """A short stream: both strategies start at random on the same prompts, so their first
    points agree; every point counts the verdicts cast so far."""
    import bench.comparisons as comparisons
    from bench.learning import base_model, models

    monkeypatch.setattr(comparisons, "ROUNDS", 2)
    monkeypatch.setattr(comparisons, "ROUND_PROMPTS", 24)
    monkeypatch.setattr(comparisons, "EVALUATED", 20)
    varied = models()[1]
    out = comparisons.compare_auto(
        [0], {0: base_model(varied, 0, tmp_path)}, {0: varied.rule(0)}, varied.questions, varied.max_new_tokens
    )
    seed = out["seeds"][0]
    random_curve, auto_curve = seed["curves"]["random"], seed["curves"]["auto"]
    assert len(random_curve) == len(auto_curve) == 2
    assert random_curve[0] == auto_curve[0]  # no head yet: the same random comparisons
    assert random_curve[0][0] <= random_curve[1][0]  # votes so far
    assert 0 < random_curve[1][0] <= 2 * 24 * comparisons.SHARE + 2  # about the share of the prompts
