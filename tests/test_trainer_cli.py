"""`thumbtune train --now`, `models`, `rollback`, `export` from the bot's settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.loop import trainer_command
from storage.database import Database
from storage.repository import Repository
from tests.feedback_data import seed_preference
from storage.registry import ModelRegistry


def test_trainer_command_comes_from_settings(settings, tiny_model_dir: Path) -> None:
    command = trainer_command(settings)
    assert command[1:4] == ["-m", "trainer", "run"]
    flags = dict(zip(command[4::2], command[5::2]))
    assert flags["--db"] == str(settings.db_path)
    assert flags["--registry"] == str(settings.data_dir / "models")
    assert flags["--base-model"] == str(tiny_model_dir)
    assert "--no-lora" in command


def test_train_now_then_models_rollback_and_export(
    settings, settings_env, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_EXAMPLES", "8")
    async def seed() -> None:
        async with await Database.open(settings.db_path) as database:
            await seed_preference(Repository(database), answers=30)

    asyncio.run(seed())  # the commands below run their own event loops, as from a shell

    fast = ["--", "--max-steps", "2", "--samples", "4", "--max-new-tokens", "8"]
    assert main(["train", "--now", *fast]) == 0
    result = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert result["status"] in ("published", "rejected") and result["version"] == 1
    registry = ModelRegistry(settings.data_dir / "models")
    assert [v.version for v in registry.versions()] == [1]

    assert main(["models"]) == 0
    listing = capfd.readouterr().out
    assert f"base model (version 0): {settings.model}" in listing
    assert any(line.split()[:2] == ["1", "0"] or line.split()[1:3] == ["1", "0"] for line in listing.splitlines())

    if result["status"] == "published":
        assert registry.current_version() == 1
        assert main(["rollback"]) == 0
        assert "version 0 is now current" in capfd.readouterr().out
        assert registry.current_version() == 0
        assert main(["rollback", "1"]) == 0
        assert registry.current_version() == 1
    assert main(["rollback", "7"]) == 1

    out = tmp_path / "kto.jsonl"
    assert main(["export", "--format", "kto", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and {tuple(sorted(r)) for r in rows} == {("completion", "label", "prompt")}


def test_dependency_direction() -> None:
    """The trainer never imports the bot; what the bot imports from trainer needs no torch."""
    import subprocess
    import sys

    check = (
        "import sys\n"
        "import storage.registry, trainer.export\n"
        "assert 'torch' not in sys.modules, 'storage.registry/export pulled in torch'\n"
        "import trainer.cli, trainer.job, trainer.evaluate\n"
        "bad = sorted(m for m in sys.modules if m == 'bot' or m.startswith('bot.'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
