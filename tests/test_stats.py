"""Statistics: Wilson intervals by hand, the per-version report, the CLI table/JSON/chart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.stats import build_report, format_table, plot, wilson_interval
from storage.repository import NewResponse
from tests.helpers import stored_response


def test_wilson_interval_matches_worked_examples():
    # 8 of 10 by hand: centre (0.8 + 1.96²/20) / (1 + 1.96²/10) = 0.7167, half-width 0.2266.
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    # 0 of 5 still has a non-zero upper bound: 1.96²/5 / (1 + 1.96²/5) = 0.4345.
    assert wilson_interval(0, 5) == (0.0, pytest.approx(0.4345, abs=1e-4))
    assert wilson_interval(50, 100) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


async def _seed(repository, *, version: int, up: int, down: int) -> None:
    stored = await repository.record_answer(
        platform="slack",
        channel="C",
        author="a",
        text="q",
        context="User: q\nBot:",
        responses=[NewResponse(text="x", model_version=version, temperature=1, top_p=1, max_new_tokens=4)],
    )
    for i in range(up):
        await repository.record_vote(response_id=stored.response_ids[0], voter=f"u{i}", emoji="+1", reward=1)
    for i in range(down):
        await repository.record_vote(response_id=stored.response_ids[0], voter=f"d{i}", emoji="-1", reward=-1)


async def test_report_counts_per_version_and_per_day(runtime, tmp_path: Path):
    repository = runtime.repository
    await _seed(repository, version=0, up=2, down=6)
    await _seed(repository, version=1, up=8, down=2)
    report = await build_report(repository)
    by_version = {v.version: v for v in report.versions}
    assert (by_version[0].up, by_version[0].down, by_version[0].approval) == (2, 6, 0.25)
    assert (by_version[1].answers, by_version[1].voters, by_version[1].approval) == (1, 10, 0.8)
    assert by_version[1].approval_low == pytest.approx(wilson_interval(8, 10)[0])
    assert sum(d.votes for d in report.days) == 18
    table = format_table(report)
    assert "80.0%" in table and "25.0%" in table

    from PIL import Image

    chart = plot(report, tmp_path / "chart.png")
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size[0] > 300
        assert image.info["Description"] == "versions=0,1"


def test_stats_command_prints_json_and_saves_a_chart(settings_env: dict[str, str], tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBTUNE_")}
    env.update(settings_env)
    chat = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input="hello\n+\nhi\n-\nhey\n+\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    chart = tmp_path / "out" / "approval.png"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "stats", "--json", "--plot", str(chart)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    [version] = data["versions"]
    assert {k: version[k] for k in ("version", "answers", "up", "down")} == {
        "version": 0,
        "answers": 3,
        "up": 2,
        "down": 1,
    }
    assert version["approval"] == pytest.approx(2 / 3)
    assert version["approval_low"] < version["approval"] < version["approval_high"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = subprocess.run([sys.executable, "-m", "bot", "stats"], capture_output=True, text=True, env=env, timeout=120)
    assert "66.7%" in table.stdout


async def _seed_comparison(repository, *, versions: tuple[int, int], verdict: str, voter: str) -> None:
    from bot.comparison import verdict_of
    from storage.repository import ComparisonRef

    stored = await repository.record_answer(
        platform="slack",
        channel="C",
        author="a",
        text="q",
        context="User: q\nBot:",
        mode="compare",
        responses=[
            NewResponse(text=f"x{v}", model_version=v, temperature=1, top_p=1, max_new_tokens=4) for v in versions
        ],
    )
    first, second = [await stored_response(repository, i) for i in stored.response_ids]
    comparison = ComparisonRef(prompt_id=stored.prompt_id, first=first, second=second)
    v = verdict_of(verdict)
    await repository.record_comparison(comparison=comparison, voter=voter, emoji=v.emoji, rewards=v.rewards)


async def test_report_has_head_to_head_from_comparisons_and_keeps_approval_to_thumbs(runtime):
    from bot.headtohead import head_to_head

    repository = runtime.repository
    await _seed(repository, version=0, up=1, down=1)
    verdicts = [((0, 1), "2️⃣")] * 3 + [((1, 0), "1️⃣")] + [((0, 1), "1️⃣")] + [((0, 1), "🤝"), ((1, 0), "👎"), ((1, 1), "1️⃣")]
    for i, (versions, verdict) in enumerate(verdicts):
        await _seed_comparison(repository, versions=versions, verdict=verdict, voter=f"v{i}")
    report = await build_report(repository)
    by_version = {v.version: v for v in report.versions}
    assert (by_version[0].up, by_version[0].down, by_version[1].up, by_version[1].down) == (1, 1, 0, 0)
    h2h = report.head_to_head
    assert (h2h.comparisons, h2h.same_version) == (7, 1)
    [pair] = h2h.pairs
    assert (pair.a_wins, pair.b_wins, pair.ties, pair.both_bad) == (1, 4, 1, 1)
    # Same numbers as the pure function on the same verdicts.
    expected = head_to_head([(a, b, e) for (a, b), e in verdicts])
    assert h2h == expected
    table = format_table(report)
    assert "head to head: 7 comparison(s)" in table and "0-1" in table
    data = json.loads(json.dumps(report.as_dict(), ensure_ascii=False))
    assert data["head_to_head"]["pairs"][0]["b_wins"] == 4
    assert {v["version"] for v in data["head_to_head"]["versions"]} == {0, 1}


def test_stats_json_has_head_to_head_after_shell_comparisons(settings_env: dict[str, str]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBTUNE_")}
    env.update(settings_env)
    chat = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input="compare: hello\n1\ncompare: hi\n=\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    result = subprocess.run(
        [sys.executable, "-m", "bot", "stats", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["head_to_head"]["same_version"] == 2 and data["head_to_head"]["pairs"] == []
    [version] = data["versions"]
    assert (version["answers"], version["up"], version["down"]) == (4, 0, 0)
