"""`thumbtune train --now`, `models`, `rollback`, `export` from the bot's settings."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import load_settings
from bot.training import trainer_command, trainer_configs
from storage.database import Database
from storage.registry import ModelRegistry
from storage.repository import Repository
from tests.feedback_data import add_signals, seed_preference
from trainer import snapshot
from trainer.cli import build_parser as build_trainer_parser
from trainer.config import DataConfig, GateConfig, JobConfig, TrainConfig, from_arguments


def test_default_settings_give_the_trainers_own_defaults(settings) -> None:
    """The settings' defaults for training options are the trainer's config defaults."""
    data, train = trainer_configs(settings)
    assert data == DataConfig()
    assert train == TrainConfig()
    job = from_arguments(JobConfig, build_trainer_parser().parse_args(trainer_command(settings, "uri")[3:]))
    assert (job.keep_versions, job.log_level) == (JobConfig.keep_versions, JobConfig.log_level)


def test_the_scheduled_command_line_reads_back_as_the_settings(
    settings_env, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    """Every training setting reaches the trainer: its own parser reads the bot's command
    line back into the same configs (a renamed or retyped option fails here)."""
    changed = {
        "THUMBTUNE_TRAIN_LEARNING_RATE": "0.0003",
        "THUMBTUNE_TRAIN_EPOCHS": "2.5",
        "THUMBTUNE_TRAIN_BATCH_SIZE": "6",
        "THUMBTUNE_TRAIN_LORA": "true",
        "THUMBTUNE_GAMMA": "0.5",
        "THUMBTUNE_HELD_OUT_FRACTION": "0.3",
        "THUMBTUNE_TRAIN_MIN_EXAMPLES": "12",
        "THUMBTUNE_KEEP_VERSIONS": "3",
        "THUMBTUNE_DEVICE": "cpu",
        "THUMBTUNE_TORCH_THREADS": "2",
        "THUMBTUNE_LOG_LEVEL": "WARNING",
    }
    for name, value in changed.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    uri = snapshot.run_uri(settings.artifacts_uri, 7)
    command = trainer_command(settings, uri)
    assert command[:4] == [sys.executable, "-m", "trainer", "run"]
    args = build_trainer_parser().parse_args(command[3:])
    data, train = trainer_configs(settings)
    assert from_arguments(TrainConfig, args) == train
    assert from_arguments(JobConfig, args) == JobConfig(
        snapshot=str((settings.data_dir / "artifacts" / "runs" / "000007").resolve()),
        registry=str((settings.data_dir / "models").resolve()),
        keep_versions=3,
        log_level="WARNING",
    )
    assert data == DataConfig(min_examples=12, gamma=0.5, held_out_fraction=0.3)
    assert train == TrainConfig(learning_rate=3e-4, epochs=2.5, batch_size=6, lora=True, device="cpu", threads=2)
    assert from_arguments(GateConfig, args) == GateConfig()


def test_the_launcher_replaces_the_interpreter(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THUMBTUNE_TRAIN_LAUNCHER", "accelerate launch --num_processes 2")
    command = trainer_command(load_settings(), "file:///artifacts/runs/000001")
    assert command[:6] == ["accelerate", "launch", "--num_processes", "2", "-m", "trainer"]


# One trained version (trained once, the slow part) through every command that reads it.
def test_train_now_then_models_rollback_and_export(  # noqa: PLR0915
    settings, settings_env, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_EXAMPLES", "8")

    async def seed() -> list[dict[str, object]]:
        async with await Database.open(settings.db_path) as database:
            await seed_preference(Repository(database), answers=30)
            return await add_signals(Repository(database), {"rephrase": (3, 1), "reply_negative": (0, 2)})

    # The commands below run their own event loops, as from a shell.
    trained_with = asyncio.run(seed())  # each implicit kind's figures when the run reads the database

    fast = ["--", "--max-steps", "2", "--samples", "4", "--max-new-tokens", "8"]
    assert main(["train", "--now", *fast]) == 0
    printed = capfd.readouterr()
    result = json.loads(printed.out)  # stdout is the result alone; the trainer's output went to stderr
    assert result["status"] in ("published", "rejected") and result["version"] == 1 and result["run"] == 1
    assert "perplexity" in result["metrics"] and "training run 1 on version 0" in printed.err
    # Progress in the log, as a percentage; no bar where stderr is not a terminal.
    assert "step 1/2 (50 %)" in printed.err and "step 2/2 (100 %)" in printed.err and "%|" not in printed.err

    async def recorded() -> list[tuple[object, ...]]:
        async with await Database.open(settings.db_path) as database:
            return [(r.status, r.parent_version, r.new_version) for r in await Repository(database).training_runs()]

    assert asyncio.run(recorded()) == [(result["status"], 0, 1)]  # the bot recorded it, from the trainer's result
    registry = ModelRegistry(settings.data_dir / "models")
    assert [v.version for v in registry.versions()] == [1]

    # What version 1 learned, as a report and as JSON: answers side by side, words, data, the gate.
    assert main(["diff"]) == 0
    report = capfd.readouterr().out
    assert report.startswith("version 1 (from version 0): ") and "fixed prompts differently" in report
    assert "before:" in report and "after:" in report and "trained on" in report
    # The gate's numbers with their intervals; too few held-out answers said as such, not decided on.
    assert "gate (95% intervals): perplexity " in report and "perplexity_ratio (" in report
    assert "not enough data: held-out preference" in report
    assert main(["diff", "1", "--json"]) == 0
    changes = json.loads(capfd.readouterr().out)
    assert (changes["version"], changes["parent"]) == (1, 0) and len(changes["answers"]) == 24
    assert set(changes["answers"][0]) == {"question", "before", "after", "source", "changed"}
    assert 0 <= changes["changed_share"] <= 1
    assert changes["answers"][0]["source"] == "reference"  # the dashboard may always show those
    assert changes["words"]["rose"] or changes["words"]["fell"]
    assert changes["data"]["counts"]["train_examples"] > 0 and changes["data"]["most_disliked"]
    assert changes["gate"]["passed"] == (result["status"] == "published")
    # The implicit signals' figures as this run used them: in its snapshot, its record and the diff.
    assert changes["data"]["implicit_weights"] == trained_with
    _, dataset = snapshot.read(snapshot.run_uri(settings.artifacts_uri, 1))
    assert [dataclasses.asdict(weight) for weight in dataset.implicit_weights] == trained_with
    assert [line.split() for line in report.splitlines() if line.startswith("  re")] == [
        ["reply_positive", "0", "-", "0.30", "(default:", "nothing", "to", "calibrate", "on)"],
        ["reply_negative", "2", "0%", "0.25"],  # (2 x 0 + 10 x 0.3) / 12
        ["retry", "0", "-", "0.30", "(default:", "nothing", "to", "calibrate", "on)"],
        ["rephrase", "4", "75%", "0.36"],  # fitted 2 x 0.75 - 1 = 0.5: (4 x 0.5 + 10 x 0.3) / 14
    ]

    async def people() -> set[str]:
        async with await Database.open(settings.db_path) as database, database.reading() as db:
            rows = await (await db.execute("SELECT voter FROM votes UNION SELECT author FROM prompts")).fetchall()
        return {row[0] for row in rows}

    text = json.dumps(changes)
    assert not [person for person in asyncio.run(people()) if person in text]  # texts only, no person keys
    assert main(["diff", "7"]) == 1 and "not in the registry" in capfd.readouterr().err

    # New signals since: `models` shows the figures now, `diff` still those the run used.
    async def more_signals() -> None:
        async with await Database.open(settings.db_path) as database:
            await add_signals(Repository(database), {"reply_positive": (3, 0)}, person="asker1")

    asyncio.run(more_signals())
    assert main(["diff", "1", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["data"]["implicit_weights"] == trained_with

    assert main(["models"]) == 0
    listing = capfd.readouterr().out
    assert f"base model (version 0): {settings.model}" in listing
    # (3 x 1 + 10 x 0.3) / 13
    assert ["reply_positive", "3", "100%", "0.46"] in [line.split() for line in listing.splitlines()]
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


def test_a_terminal_gets_progress_bars_for_training(settings, settings_env, tmp_path: Path) -> None:
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    async def seed() -> None:
        async with await Database.open(settings.db_path) as database:
            await seed_preference(Repository(database), answers=30)

    asyncio.run(seed())
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a person at a terminal, not CI
    env.update(settings_env, THUMBTUNE_TRAIN_MIN_EXAMPLES="8", TERM="xterm")
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    trainer = subprocess.Popen(
        [sys.executable, "-m", "bot", "train", "--now", "--", "--max-steps", "3", "--samples", "4"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        shown += chunk
    out, _ = trainer.communicate(timeout=240)
    os.close(primary)
    assert trainer.returncode == 0, shown.decode(errors="replace")[-2000:]
    terminal = shown.decode(errors="replace")
    assert "3/3" in terminal and "%|" in terminal  # tqdm's bar, drawn on the terminal
    assert json.loads(out)["run"] == 1  # stdout still holds the result alone
    # The run's snapshot and result, and the version, are the bot's account's alone (the
    # database here was made by this test's own process, with its own umask).
    data = Path(settings_env["THUMBTUNE_DATA_DIR"])
    written = [*(data / "artifacts").rglob("*"), *(data / "models").rglob("*")]
    assert any(path.name == "dataset.json" for path in written) and any(path.name == "result.json" for path in written)
    assert [str(path) for path in written if path.stat().st_mode & 0o077] == []


@pytest.mark.parametrize("command", ["run", "export", "models", "rollback"])
def test_every_trainer_command_prints_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Help texts say "95% interval": argparse must not take the % for a format.
    with pytest.raises(SystemExit) as done:
        build_trainer_parser().parse_args([command, "--help"])
    assert done.value.code == 0 and "usage: python -m trainer" in capsys.readouterr().out
