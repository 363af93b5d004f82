"""`thumbtune simulate` end to end: real service, storage, scheduler job, trainer subprocess, swap."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_simulate_runs_the_loop_and_prints_versions_in_live_order(tmp_path: Path, tiny_model_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBTUNE_")}
    env["THUMBTUNE_DB"] = str(tmp_path / "must-not-be-used.db")  # simulate never touches the bot's db
    data = tmp_path / "sim"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "simulate",
            "--model",
            str(tiny_model_dir),
            "--rounds",
            "2",
            "--prompts",
            "24",
            "--users",
            "6",
            "--prefer",
            "warm",
            "--seed",
            "1",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    versions = report["versions"]
    assert versions[0]["version"] == 0 and versions[0]["gate"] == {}
    assert [v["version"] for v in versions] == sorted(v["version"] for v in versions)
    assert sum(v["answers"] for v in versions) == 24 * 3
    assert len(report["runs"]) == 2
    assert all(run["status"] in ("published", "rejected", "skipped") for run in report["runs"])
    for version in versions[1:]:
        assert version["gate"]["status"] == "published" and "perplexity" in version["gate"]
    assert not (tmp_path / "must-not-be-used.db").exists()
    with sqlite3.connect(data / "simulate.db") as db:
        runs = db.execute("SELECT status FROM training_runs ORDER BY id").fetchall()
        tags = {row[0] for row in db.execute("SELECT DISTINCT model_version FROM responses")}
    assert [r[0] for r in runs] == [run["status"] for run in report["runs"]]
    assert tags == {v["version"] for v in versions}
