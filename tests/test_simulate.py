"""`thumbtune simulate` end to end: real service, storage, scheduler job, trainer subprocess, swap."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def test_simulate_runs_the_loop_and_prints_versions_in_live_order(simulated: tuple[Path, dict]):
    data, report = simulated  # `simulate --rounds 2 --prompts 24 --users 6 --seed 1` (conftest)
    versions = report["versions"]
    assert versions[0]["version"] == 0 and versions[0]["gate"] == {}
    assert [v["version"] for v in versions] == sorted(v["version"] for v in versions)
    assert sum(v["answers"] for v in versions) == 24 * 3
    assert len(report["runs"]) == 2
    assert all(run["status"] in ("published", "rejected", "skipped") for run in report["runs"])
    for version in versions[1:]:
        assert version["gate"]["status"] == "published" and "perplexity" in version["gate"]
    with sqlite3.connect(data / "simulate.db") as db:
        runs = db.execute("SELECT status FROM training_runs ORDER BY id").fetchall()
        tags = {row[0] for row in db.execute("SELECT DISTINCT model_version FROM responses")}
    assert [r[0] for r in runs] == [run["status"] for run in report["runs"]]
    assert tags == {v["version"] for v in versions}


def test_the_same_seed_gives_the_same_versions_with_sparse_noisy_votes(tiny_model_dir: Path, tmp_path: Path):
    from bot.simulate import SimulationOptions, run_simulation

    def simulate(name: str) -> dict:
        options = SimulationOptions(
            users=5,
            rounds=1,
            prompts=24,
            voters_per_answer=1,
            vote_share=0.75,
            noise=0.25,
            seed=3,
            model=tiny_model_dir,
            data_dir=tmp_path / name,
        )
        report = run_simulation(options)
        report.pop("seconds")
        for version in report["versions"]:  # timings differ from run to run; nothing else may
            for key in [k for k in version["gate"] if "second" in k or k.endswith("_per_s")]:
                version["gate"].pop(key)
        return report

    first, second = simulate("a"), simulate("b")
    assert first == second
    answers = 24 * 2
    assert sum(v["answers"] for v in first["versions"]) == answers
    assert 0 < first["votes"] < answers  # a quarter of the answers got no vote, the rest one each
    assert first["versions"][0]["votes_before"] == 0
    with sqlite3.connect(tmp_path / "a" / "simulate.db") as db:
        assert db.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == first["votes"]
        against_the_rule = db.execute(
            "SELECT COUNT(*) FROM votes v JOIN responses r ON r.id = v.response_id"
            " WHERE (v.reward > 0) != (lower(r.text) LIKE '%warm%')"
        ).fetchone()[0]
    # --noise 0.25: about a quarter of the votes go against the people's rule (none would without it).
    assert 0 < against_the_rule < first["votes"] / 2
