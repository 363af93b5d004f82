"""Training on a Ray cluster: a real local Ray head, real jobs through the Ray Jobs API.

The module starts one Ray head (``ray start --head --block`` on free ports, in a temp
folder; bench.ray_head) and stops it at the end by ending the process group it started,
nothing else.
Jobs run the real trainer on the tiny model, or a tiny Python program where a test
needs a job that fails, hangs or writes no result.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient  # the ray extra; `make test` installs it

from bench.ray_head import free_port, local_ray_head
from bot.app import open_runtime
from bot.events import IncomingPrompt
from bot.settings import SettingsError, load_settings
from bot.training import trainer_launcher
from bot.training_backends import RayBackend
from storage.database import Database
from storage.registry import ModelRegistry
from storage.repository import Repository
from tests.feedback_data import seed_preference
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head on this machine (its dashboard address); stopped by ending what it started."""
    with local_ray_head() as address:
        yield address


@pytest.fixture
def ray_env(settings_env: dict[str, str], ray_head: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Bot settings that train on the Ray head; the job runs this Python (the cluster's `python`)."""
    env = {
        "THUMBTUNE_TRAIN_BACKEND": "ray",
        "THUMBTUNE_RAY_ADDRESS": ray_head,
        "THUMBTUNE_TRAIN_LAUNCHER": sys.executable,
        "THUMBTUNE_TRAIN_EVERY_MINUTES": "0",  # fired by hand
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**settings_env, **env}


async def _runs(runtime: Any) -> list[tuple[Any, ...]]:
    return [(r.status, r.parent_version, r.new_version, r.reason) for r in await runtime.repository.training_runs()]


def _job(runtime: Any, run_id: int) -> tuple[JobStatus, str]:
    backend = runtime.loop.runs.backend
    assert isinstance(backend, RayBackend)
    client = JobSubmissionClient(backend.address)
    job = backend.job_id(run_id)
    return client.get_job_status(job), client.get_job_logs(job)


async def test_a_run_on_ray_publishes_and_the_running_bot_swaps_to_it(ray_env, caplog):
    caplog.set_level("INFO", logger="thumbtune.trainer")
    async with open_runtime(load_settings()) as runtime:
        await seed_preference(runtime.repository, answers=40)
        outcome = await runtime.loop.run_training()
        assert outcome.status in ("published", "rejected"), outcome.reason
        assert outcome.version == 1
        status, logs = await asyncio.to_thread(_job, runtime, outcome.run)
        assert status == JobStatus.SUCCEEDED
        assert "training run 1 on version 0" in logs
        # The job's log lines reached the bot's log.
        assert any("training run 1 on version 0" in record.getMessage() for record in caplog.records)
        assert (await _runs(runtime))[0][:3] == (outcome.status, 0, 1)
        if outcome.status == "published":
            assert runtime.generator.version == 1 == outcome.serving
            reply = await runtime.service.on_prompt(IncomingPrompt(platform="shell", channel="c", user="u", text="hi"))
            assert reply.ok and reply.model_version == 1


async def test_a_failing_and_a_hanging_job_are_recorded_and_stopped(ray_env, monkeypatch):
    async with open_runtime(load_settings()) as runtime:
        await seed_preference(runtime.repository, answers=40)
        runtime.loop.runs.launcher = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        failed = await runtime.loop.run_training()
        assert failed.status == "failed" and "ended as FAILED on Ray" in failed.reason, failed.reason
        assert (await asyncio.to_thread(_job, runtime, failed.run))[0] == JobStatus.FAILED

        runtime.loop.runs.launcher = [sys.executable, "-c", "import time; time.sleep(120)"]
        runtime.loop.runs.settings = runtime.settings.model_copy(update={"train_timeout_s": 4.0})
        hung = await runtime.loop.run_training()
        assert hung.status == "failed" and "timed out after 4 s and was stopped" in hung.reason, hung.reason
        assert (await asyncio.to_thread(_job, runtime, hung.run))[0] == JobStatus.STOPPED
        assert runtime.generator.version == 0
        assert [status for status, *_ in await _runs(runtime)] == ["failed", "failed"]


async def test_a_job_without_a_result_is_failed_not_published(ray_env):
    async with open_runtime(load_settings()) as runtime:
        await seed_preference(runtime.repository, answers=40)
        runtime.loop.runs.launcher = [sys.executable, "-c", "print('done, writing nothing')"]
        outcome = await runtime.loop.run_training()
        assert outcome.status == "failed" and "without writing a result" in outcome.reason
        assert (await asyncio.to_thread(_job, runtime, outcome.run))[0] == JobStatus.SUCCEEDED
        assert ModelRegistry(runtime.settings.registry_uri).versions() == []
        assert runtime.generator.version == 0


async def test_an_unreachable_ray_head_is_a_recorded_failure_and_the_bot_keeps_serving(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_BACKEND", "ray")
    monkeypatch.setenv("THUMBTUNE_RAY_ADDRESS", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "0")
    async with open_runtime(load_settings()) as runtime:
        await seed_preference(runtime.repository, answers=40)
        outcome = await runtime.loop.run_training()
        assert outcome.status == "failed" and "is unreachable" in outcome.reason, outcome.reason
        [(status, _, _, reason)] = await _runs(runtime)
        assert status == "failed" and reason == outcome.reason
        reply = await runtime.service.on_prompt(IncomingPrompt(platform="shell", channel="c", user="u", text="hi"))
        assert reply.ok and reply.model_version == 0


async def test_a_job_still_running_after_the_bot_died_is_found_again_and_recorded_once(ray_env, tmp_path):
    settings = load_settings()
    async with await Database.open(settings.db_path) as database:
        await seed_preference(Repository(database), answers=40)
    # `thumbtune train --now` submits the job; the process is killed while the job runs.
    log_path = tmp_path / "train.log"
    with log_path.open("wb") as log_file:
        train = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "train", "--now", cwd=ROOT, env=os.environ.copy(), stderr=log_file
        )
    backend = RayBackend(settings)
    client = JobSubmissionClient(backend.address)

    def job_running() -> bool:
        try:
            return client.get_job_status(backend.job_id(1)) == JobStatus.RUNNING
        except RuntimeError:  # not submitted yet
            return False

    await wait_for(lambda: asyncio.to_thread(job_running), timeout=120, interval=0.2)
    # The person at `train --now` sees the job's own output on stderr, as with a local trainer.
    await wait_for(lambda: "INFO trainer.job: training run 1 on version 0" in log_path.read_text(), timeout=120)
    train.kill()
    await train.wait()

    async with open_runtime(settings) as runtime:
        await wait_for(lambda: runtime.loop.runs_finished >= 1, timeout=180)
        [(status, parent, version, _)] = await _runs(runtime)
        assert (status, parent, version) in (("published", 0, 1), ("rejected", 0, 1))
        assert runtime.generator.version == (1 if status == "published" else 0)
    assert client.get_job_status(backend.job_id(1)) == JobStatus.SUCCEEDED
    assert [v.version for v in ModelRegistry(settings.registry_uri).versions()] == [1]  # published once
    assert "submitted to Ray" in log_path.read_text()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"THUMBTUNE_TRAIN_BACKEND": "ray"}, "THUMBTUNE_RAY_ADDRESS: needed with THUMBTUNE_TRAIN_BACKEND=ray"),
        ({"THUMBTUNE_TRAIN_BACKEND": "slurm"}, "THUMBTUNE_TRAIN_BACKEND"),
        ({"THUMBTUNE_RAY_RUNTIME_ENV": "{pip: thumbtune"}, "THUMBTUNE_RAY_RUNTIME_ENV"),
        ({"THUMBTUNE_RAY_GPUS": "-1"}, "THUMBTUNE_RAY_GPUS"),
    ],
)
def test_ray_settings_are_checked(settings_env, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=expected):
        load_settings()


def test_a_ray_job_asks_for_a_gpu_when_training_is_meant_for_cuda(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_BACKEND", "ray")
    monkeypatch.setenv("THUMBTUNE_RAY_ADDRESS", "http://gpu-host:8265")
    monkeypatch.setenv("THUMBTUNE_RAY_RUNTIME_ENV", '{"pip": ["thumbtune[train]"]}')
    assert RayBackend(load_settings()).gpus == 0.0
    monkeypatch.setenv("THUMBTUNE_DEVICE", "cuda")
    settings = load_settings()
    assert RayBackend(settings).gpus == 1.0 and settings.ray_runtime_env == {"pip": ["thumbtune[train]"]}
    assert trainer_launcher(settings) == ["python"]  # the cluster's interpreter, not this machine's
    monkeypatch.setenv("THUMBTUNE_RAY_GPUS", "0.5")
    assert RayBackend(load_settings()).gpus == 0.5
