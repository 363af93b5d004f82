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
