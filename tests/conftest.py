"""Shared fixtures: the tiny model (built once per session), settings and a running core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

# No test may reach the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.tinymodel import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-architecture chat model: a ChatML chat template, answers end with <|im_end|>."""
    from bot.tinymodel import TinyModelSpec, make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", TinyModelSpec(arch="llama"))


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, dict]:
    """A data folder made by `thumbtune simulate` (2 runs, 72 answers), and its printed report.

    Made once: test_simulate checks the command, the dashboard tests read its data (copy it
    before changing anything)."""
    root = tmp_path_factory.mktemp("simulated")
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBTUNE_")}
    env["THUMBTUNE_DB"] = str(root / "must-not-be-used.db")  # simulate never touches the bot's db
    data = root / "sim"
    command = [sys.executable, "-m", "bot", "simulate", "--model", str(tiny_model_dir), "--rounds", "2"]
    command += ["--prompts", "24", "--users", "6", "--prefer", "warm", "--seed", "1", "--data-dir", str(data)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert not (root / "must-not-be-used.db").exists()
    return data, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def settings_env(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a bot whose data lives in tmp_path, serving the tiny model."""
    env = {
        "THUMBTUNE_MODEL": str(tiny_model_dir),
        "THUMBTUNE_DATA_DIR": str(tmp_path / "data"),
        "THUMBTUNE_TORCH_THREADS": "1",
        "THUMBTUNE_MAX_NEW_TOKENS": "24",
        "THUMBTUNE_BATCH_WINDOW_MS": "5",
        "THUMBTUNE_DASHBOARD_PORT": "0",  # no listener on 8080: tests that want one pick a free port
    }
    for name in list(os.environ):
        if name.startswith("THUMBTUNE_") or name in (
            "DISCORD_TOKEN",
            "SLACK_BOT_TOKEN",
            "SLACK_SIGNING_SECRET",
            "SLACK_APP_TOKEN",
            "SLACK_API_URL",
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def settings(settings_env: dict[str, str]):
    from bot.settings import load_settings

    return load_settings()


@pytest.fixture
async def runtime(settings) -> AsyncIterator:
    from bot.app import open_runtime

    async with open_runtime(settings) as running:
        yield running


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator:
    """A local fake Discord (REST + gateway) that the unmodified discord.py client talks to."""
    import discord
    import yarl

    from bot.adapters.discord import invite_url
    from tests.fakes.discord import FakeDiscord

    fake = FakeDiscord()
    fake.invite(invite_url(fake.bot.id))  # the bot may do exactly what the link docs/discord.md gives asks for
    await fake.start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    yield fake
    await fake.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (Debian's binaries, a temp folder, a free
    port), stopped at the end. Skipped where no server binaries are installed, unless
    THUMBTUNE_TEST_POSTGRES=required (CI sets it): then that is a failure."""
    from bench.pgserver import PostgresServer, ServerUnavailable

    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        if os.environ.get("THUMBTUNE_TEST_POSTGRES") == "required":
            pytest.fail(f"PostgreSQL is required here: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's database lives: a SQLite file, or a new PostgreSQL database (each test
    taking it runs once per backend)."""
    if request.param == "sqlite":
        return tmp_path / "bot.db"
    return request.getfixturevalue("postgres_url")
