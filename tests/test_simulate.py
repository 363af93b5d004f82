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
