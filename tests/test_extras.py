"""`pip install thumbtune` runs the bot; training needs `thumbtune[train]`, and says so.

The train extra's packages are made unimportable the way Python itself marks a missing
module (``sys.modules[name] = None``: ``import`` raises ModuleNotFoundError and
``importlib.util.find_spec`` answers None), in a fresh interpreter for the commands and
with monkeypatch inside this one, so the real code paths meet a machine without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import open_runtime
from bot.events import IncomingPrompt
from bot.settings import load_settings
from trainer.requirements import INSTALL_HINT, TRAIN_PACKAGES

WITHOUT_TRAIN_EXTRA = f"import sys\nfor name in {TRAIN_PACKAGES!r}:\n    sys.modules[name] = None\n"


def thumbtune(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`thumbtune ARGS` in a fresh interpreter that cannot import the train extra."""
    code = WITHOUT_TRAIN_EXTRA + "from bot.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("THUMBTUNE_", "SLACK_", "DISCORD_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code, *args], input=stdin, capture_output=True, text=True, env=full, timeout=240
    )


def test_every_bot_module_imports_without_the_train_extra() -> None:
    code = WITHOUT_TRAIN_EXTRA + (
        "import importlib, pkgutil, bot\n"
        "names = [m.name for m in pkgutil.walk_packages(bot.__path__, 'bot.') if m.name != 'bot.__main__']\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) >= 15  # the walk really found the bot's modules


def test_the_bot_chats_and_counts_without_the_train_extra(settings_env: dict[str, str], tmp_path: Path) -> None:
    chat = thumbtune("run", "--adapter", "shell", env=settings_env, stdin="hello there\n+\n")
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "bot [v0]:" in chat.stdout and "(recorded 👍)" in chat.stdout
    stats = thumbtune("stats", "--json", env=settings_env)
    assert stats.returncode == 0, stats.stderr[-2000:]
    assert [(row["version"], row["up"], row["down"]) for row in json.loads(stats.stdout)["versions"]] == [(0, 1, 0)]
    out = tmp_path / "kto.jsonl"
    assert thumbtune("export", "--format", "kto", "--out", str(out), env=settings_env).returncode == 0
    assert len(out.read_text().splitlines()) == 1


def test_training_without_the_extra_says_what_to_install(settings_env: dict[str, str], tmp_path: Path) -> None:
    train = thumbtune("train", "--now", env=settings_env)
    assert train.returncode == 2
    assert INSTALL_HINT in train.stderr and "trl" in train.stderr
    assert "Traceback" not in train.stderr

    hf = thumbtune("export", "--format", "hf", "--out", str(tmp_path / "hf"), env=settings_env)
    assert hf.returncode == 2 and INSTALL_HINT in hf.stderr and "datasets" in hf.stderr
    assert not (tmp_path / "hf").exists()


async def test_chat_retrain_and_the_schedule_say_what_to_install(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in TRAIN_PACKAGES:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("THUMBTUNE_ADMINS", "shell:me")
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "60")
    async with open_runtime(load_settings()) as runtime:
        reply = await runtime.service.on_prompt(
            IncomingPrompt(platform="shell", channel="local", user="me", text="retrain")
        )
        assert INSTALL_HINT in reply.text
        assert runtime.loop.scheduler.get_job("train") is None
        outcome = await runtime.loop.run_training()
        assert outcome.status == "failed" and INSTALL_HINT in (outcome.reason or "")
    assert any(
        "scheduled retraining is off" in r.getMessage() and INSTALL_HINT in r.getMessage() for r in caplog.records
    )

    # A launcher runs the trainer with another interpreter (maybe on a GPU host): no verdict here.
    monkeypatch.setenv("THUMBTUNE_TRAIN_LAUNCHER", "ssh gpu-host python")
    async with open_runtime(load_settings(), loop=False) as runtime:
        assert runtime.loop.unavailable is None
