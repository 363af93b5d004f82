"""Closing the loop: the schedule, the trainer subprocess's failure modes, hot reload, admin actions.

The trainer runs as a real subprocess. Where a test needs a trainer that crashes or
hangs, the launcher command (THUMBTUNE_TRAIN_LAUNCHER's job) is a tiny Python program
that does exactly that: the process boundary is the thing under test.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import pytest

from bot.app import open_runtime
from bot.events import IncomingPrompt
from bot.settings import load_settings
from storage.registry import ModelRegistry
from tests.feedback_data import seed_preference
from tests.helpers import publish_copy, wait_for

CRASHING_TRAINER = [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]
HANGING_TRAINER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _prompt(text: str, user: str = "U1") -> IncomingPrompt:
    return IncomingPrompt(platform="slack", channel="C1", user=user, text=text)


async def _runs(runtime) -> list[tuple]:
    return [(r.status, r.parent_version, r.new_version, r.reason) for r in await runtime.repository.training_runs()]


async def test_a_short_interval_fires_the_job_and_too_few_votes_is_a_recorded_skip(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "0.005")  # every 0.3 s
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_NEW_VOTES", "5")
    async with open_runtime(load_settings()) as runtime:
        await wait_for(lambda: runtime.loop.runs_finished >= 2, timeout=20)
        runs = await _runs(runtime)
    assert runs and all(status == "skipped" for status, *_ in runs)
    assert "0 new vote(s) since version 0" in runs[0][3] and "THUMBTUNE_TRAIN_MIN_NEW_VOTES" in runs[0][3]


async def test_a_restart_resumes_the_schedule_from_the_last_recorded_run(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "60")
    settings = load_settings()
    async with open_runtime(settings, loop=False) as runtime:
        run_id = await runtime.repository.start_training_run(parent_version=0)
        await runtime.repository.finish_training_run(run_id, status="skipped", reason="test")
    started = time.time()
    async with open_runtime(settings) as runtime:
        job = runtime.loop.scheduler.get_job("train")
        due = job.next_run_time.timestamp()
    # The last run was just now, so the next one is an interval after it, not after the restart
    # and not at once.
    assert started + 59 * 60 < due < started + 61 * 60


async def test_a_crashing_trainer_is_recorded_and_the_bot_keeps_serving(runtime, caplog):
    caplog.set_level(logging.INFO, logger="thumbtune.trainer")
    runtime.loop.command = CRASHING_TRAINER
    run_id = await runtime.repository.start_training_run(parent_version=0)  # what the trainer had begun
    outcome = await runtime.loop.run_training()
    assert outcome.status == "failed" and "exited with code 3" in outcome.reason
    assert outcome.serving == 0 and runtime.generator.version == 0
    assert (await _runs(runtime))[0][:2] == ("failed", 0)
    assert any("boom" in record.getMessage() for record in caplog.records)  # its log reached ours
    assert run_id
    reply = await runtime.service.on_prompt(_prompt("still there?"))
    assert reply.ok and reply.model_version == 0


async def test_a_hanging_trainer_is_killed_at_the_timeout_and_a_second_run_is_refused(runtime):
    runtime.loop.command = HANGING_TRAINER
    runtime.loop.settings = runtime.settings.model_copy(update={"train_timeout_s": 1.5})
    first = asyncio.create_task(runtime.loop.run_training())
    await wait_for(lambda: runtime.loop._training.locked())
    second = await runtime.loop.run_training()
    assert second.status == "busy"
    assert "already going" in await runtime.loop.retrain()
    outcome = await first
    assert outcome.status == "failed" and "timed out after 1.5 s" in outcome.reason
    assert runtime.generator.version == 0


async def test_the_watcher_picks_up_a_version_published_elsewhere_without_losing_requests(runtime, tiny_model_dir):
    registry = runtime.loop.registry
    in_flight = [asyncio.create_task(runtime.service.on_prompt(_prompt(f"q{i}", user=f"U{i}"))) for i in range(6)]
    version = await asyncio.to_thread(publish_copy, registry, tiny_model_dir)
    assert await runtime.loop.check_registry() == version
    replies = await asyncio.gather(*in_flight)
    assert all(reply.ok and reply.model_version in (0, version) for reply in replies)
    after = await runtime.service.on_prompt(_prompt("and now?", user="U99"))
    assert after.ok and after.model_version == version
    assert (await runtime.repository.model_versions_live_at()).keys() == {0, version}

    # A rollback (here through the admin action) goes back to the base model.
    assert "now serving version 0" in await runtime.loop.rollback(None)
    assert (await runtime.service.on_prompt(_prompt("back?", user="U98"))).model_version == 0


async def test_a_broken_published_version_leaves_the_current_one_serving(runtime, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    await asyncio.to_thread(publish_copy, runtime.loop.registry, broken)
    assert await runtime.loop.check_registry() == 0
    assert (await runtime.service.on_prompt(_prompt("hi"))).model_version == 0


async def test_a_successful_run_goes_live_and_tags_the_next_answers(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_NEW_VOTES", "10")
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "0")  # fired by hand below
    announcements: list[str] = []
    async with open_runtime(load_settings()) as runtime:

        async def announce(text: str) -> None:
            announcements.append(text)

        runtime.loop.announce = announce
        await seed_preference(runtime.repository, answers=40)
        outcome = await runtime.loop.scheduled_run()
        assert outcome.status == "published", outcome.reason
        assert outcome.serving == outcome.version == 1 == runtime.generator.version
        reply = await runtime.service.on_prompt(_prompt("what should I eat"))
        assert reply.ok and reply.model_version == 1
        assert (await _runs(runtime))[0][:3] == ("published", 0, 1)
        assert announcements and announcements[0].startswith("Now serving model version 1.")
        models = await runtime.loop.models()
        assert "serving version 1" in models


async def test_the_shell_admin_can_retrain_from_chat(runtime):
    runtime.loop.command = CRASHING_TRAINER
    reply = await runtime.service.on_prompt(
        IncomingPrompt(platform="shell", channel="local", user="me", text="retrain")
    )
    assert not reply.ok and reply.text.startswith("Training started")
    await wait_for(lambda: runtime.loop.runs_finished >= 1, timeout=30)
    models = await runtime.service.on_prompt(
        IncomingPrompt(platform="shell", channel="local", user="me", text="models")
    )
    assert "base model (version 0)" in models.text


@pytest.mark.parametrize("cron", ["0 3 * * *", "*/15 * * * *"])
def test_cron_settings_are_checked(settings_env, monkeypatch, cron):
    monkeypatch.setenv("THUMBTUNE_TRAIN_CRON", cron)
    assert load_settings().train_cron == cron


async def test_a_damaged_current_version_falls_back_to_the_base_model_at_start(settings_env, tiny_model_dir):
    settings = load_settings()
    registry = ModelRegistry(settings.models_dir)
    version = publish_copy(registry, tiny_model_dir, metrics={"perplexity": 9.0})
    (registry.get(version).path / "model.safetensors").write_bytes(b"not weights")
    async with open_runtime(settings, loop=False) as runtime:
        assert runtime.generator.version == 0
        assert (await runtime.service.on_prompt(_prompt("hi"))).model_version == 0
    # With a good current version, the bot starts on it.
    good = publish_copy(registry, tiny_model_dir, metrics={"perplexity": 9.0})
    async with open_runtime(settings, loop=False) as runtime:
        assert runtime.generator.version == good
