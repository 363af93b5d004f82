"""Closing the loop: the schedule, the trainer subprocess's failure modes, hot reload, admin actions.

The trainer runs as a real subprocess on a snapshot in the artifact store. Where a test
needs a trainer that crashes or hangs, the launcher (THUMBTUNE_TRAIN_LAUNCHER's job) is
a tiny Python program that does exactly that: the process boundary is the thing under test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import pytest

from bot.app import open_runtime
from bot.events import IncomingPrompt
from bot.settings import DataUnavailable, load_settings
from bot.training import INTERRUPTED
from storage.registry import ModelRegistry
from tests.feedback_data import seed_preference
from tests.helpers import publish_copy, wait_for
from trainer import snapshot

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
    runtime.loop.runs.launcher = CRASHING_TRAINER
    await seed_preference(runtime.repository, answers=40)
    outcome = await runtime.loop.run_training()
    assert outcome.status == "failed" and "exited with code 3 without writing a result" in outcome.reason
    assert outcome.serving == 0 and runtime.generator.version == 0
    assert (await _runs(runtime))[0] == ("failed", 0, None, outcome.reason)
    assert any("boom" in record.getMessage() for record in caplog.records)  # its log reached ours
    reply = await runtime.service.on_prompt(_prompt("still there?"))
    assert reply.ok and reply.model_version == 0


async def test_a_hanging_trainer_is_killed_at_the_timeout_and_a_second_run_is_refused(runtime):
    runtime.loop.runs.launcher = HANGING_TRAINER
    runtime.loop.runs.settings = runtime.settings.model_copy(update={"train_timeout_s": 1.5})
    await seed_preference(runtime.repository, answers=40)
    first = asyncio.create_task(runtime.loop.run_training())
    await wait_for(lambda: runtime.loop._training.locked())
    second = await runtime.loop.run_training()
    assert second.status == "busy"
    assert "already going" in await runtime.loop.retrain()
    outcome = await first
    assert outcome.status == "failed" and "timed out after 1.5 s and was killed" in outcome.reason
    assert runtime.generator.version == 0
    assert [status for status, *_ in await _runs(runtime)] == ["failed"]


async def test_too_little_data_is_a_recorded_skip_without_a_trainer(runtime):
    runtime.loop.runs.launcher = CRASHING_TRAINER  # would fail the run if it were started
    await seed_preference(runtime.repository, answers=4)
    outcome = await runtime.loop.run_training()
    assert outcome.status == "skipped" and "need at least 8" in outcome.reason
    [(status, parent, version, reason)] = await _runs(runtime)
    assert (status, parent, version) == ("skipped", 0, None) and "need at least 8" in reason
    assert not (runtime.settings.data_dir / "artifacts" / "runs").exists()  # no snapshot either


async def test_the_snapshot_holds_no_person_key_and_the_run_is_recorded_from_its_result(runtime):
    await seed_preference(runtime.repository, answers=40)
    runtime.loop.runs.launcher = CRASHING_TRAINER
    outcome = await runtime.loop.run_training()
    folder = Path(snapshot.run_uri(runtime.settings.artifacts_uri, outcome.run))
    manifest, dataset = snapshot.read(str(folder))
    assert (manifest.run, manifest.parent, manifest.base_model) == (outcome.run, 0, runtime.settings.model)
    assert len(dataset.train) + len(dataset.held_out) + dataset.held_out_repeats == 40
    raw = (folder / snapshot.DATASET).read_text() + (folder / snapshot.MANIFEST).read_text()
    async with runtime.database.reading() as db:
        people = {row[0] for row in await (await db.execute("SELECT voter FROM votes")).fetchall()}
        people |= {row[0] for row in await (await db.execute("SELECT author FROM prompts")).fetchall()}
    assert people and not [person for person in people if person in raw]


async def test_a_stopping_bot_kills_the_trainer_and_records_the_run(runtime, tmp_path):
    pid_file = tmp_path / "trainer.pid"
    runtime.loop.runs.launcher = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    await seed_preference(runtime.repository, answers=40)
    running = asyncio.create_task(runtime.loop.run_training())
    await wait_for(lambda: pid_file.exists() and pid_file.read_text())
    await runtime.loop.stop()
    assert running.cancelled()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped
    assert await _runs(runtime) == [("failed", 0, None, "killed: the bot stopped during the run")]


async def test_runs_left_running_by_a_dead_bot_are_settled_at_the_next_start(settings):
    async with open_runtime(settings, loop=False) as runtime:
        finished = await runtime.repository.start_training_run(parent_version=0)
        await runtime.repository.start_training_run(parent_version=0)
    # The first run's trainer wrote its result before the bot died; the second's never did.
    written = snapshot.RunResult(run=finished, status="rejected", parent=0, version=1, reason="perplexity")
    snapshot.write_result(snapshot.run_uri(settings.artifacts_uri, finished), written)
    async with open_runtime(settings) as runtime:
        await wait_for(lambda: runtime.loop.runs_finished >= 2)
        runs = await _runs(runtime)
    assert runs == [("failed", 0, None, INTERRUPTED), ("rejected", 0, 1, "perplexity")]  # newest first


async def test_an_unwritable_artifact_store_stops_start_up_with_one_clear_line(settings):
    blocked = settings.model_copy(update={"artifacts": "/proc/thumbtune-artifacts"})
    with pytest.raises(DataUnavailable, match="THUMBTUNE_ARTIFACTS: cannot write the artifact store /proc/"):
        async with open_runtime(blocked):
            pass


async def test_a_version_whose_result_is_missing_is_never_served(runtime):
    # The real trainer publishes its version, then the result is lost (a crash after publishing).
    artifacts = runtime.settings.artifacts_uri
    then_lose_the_result = f'"{sys.executable}" "$@"; find "{artifacts}" -name result.json -delete'
    runtime.loop.runs.launcher = ["sh", "-c", then_lose_the_result, "sh"]
    await seed_preference(runtime.repository, answers=40)
    outcome = await runtime.loop.run_training()
    assert outcome.status == "failed" and "without writing a result" in outcome.reason
    [written] = runtime.loop.registry.versions()
    assert written.version == 1 and runtime.loop.registry.current_version() == 0 == runtime.generator.version


async def test_tensorboard_tracking_writes_the_loss_into_the_runs_folder_and_records_it(runtime):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runtime.loop.runs.settings = runtime.settings.model_copy(update={"report_to": "tensorboard"})
    await seed_preference(runtime.repository, answers=40)
    outcome = await runtime.loop.run_training()
    assert outcome.status in ("published", "rejected"), outcome.reason
    folder = Path(snapshot.run_uri(runtime.settings.artifacts_uri, outcome.run or 0)) / snapshot.TENSORBOARD
    assert outcome.tracking == str(folder)
    [events] = {path.parent for path in folder.rglob("events.out.tfevents.*")}
    scalars = EventAccumulator(str(events)).Reload()
    losses = scalars.Scalars("train/loss")
    assert len(losses) == outcome.metrics["train_steps"] and all(point.value > 0 for point in losses)
    [run] = await runtime.repository.training_runs()
    assert run.tracking == str(folder)


async def test_a_two_process_run_trains_shards_and_only_rank_0_publishes_and_reports(runtime):
    # torchrun is what `accelerate launch --multi_gpu` runs underneath: the same RANK / WORLD_SIZE.
    torchrun = Path(sys.executable).with_name("torchrun")
    runtime.loop.runs.launcher = [str(torchrun), "--standalone", "--nproc_per_node", "2"]
    await seed_preference(runtime.repository, answers=40)
    outcome = await runtime.loop.run_training()
    assert outcome.status in ("published", "rejected") and outcome.version == 1, outcome.reason
    assert outcome.metrics["processes"] == 2
    _, dataset = snapshot.read(snapshot.run_uri(runtime.settings.artifacts_uri, outcome.run))
    # Each of the two ranks took its own half of every step's examples: half the steps of one process.
    per_epoch = math.ceil(len(dataset.train) / (2 * runtime.settings.train_batch_size))
    assert outcome.metrics["train_steps"] == math.ceil(runtime.settings.train_epochs * per_epoch)
    assert [v.version for v in runtime.loop.registry.versions()] == [1]  # published once
    assert (await _runs(runtime))[0][:3] == (outcome.status, 0, 1)


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
        assert "fixed prompts differently" in announcements[0] and "More likely now:" in announcements[0]
        models = await runtime.loop.models()
        assert "serving version 1" in models


async def test_the_shell_admin_can_retrain_from_chat(runtime):
    runtime.loop.runs.launcher = CRASHING_TRAINER
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
    registry = ModelRegistry(settings.registry_uri)
    version = publish_copy(registry, tiny_model_dir, metrics={"perplexity": 9.0})
    (registry.get(version).path / "model.safetensors").write_bytes(b"not weights")
    async with open_runtime(settings, loop=False) as runtime:
        assert runtime.generator.version == 0
        assert (await runtime.service.on_prompt(_prompt("hi"))).model_version == 0
    # With a good current version, the bot starts on it.
    good = publish_copy(registry, tiny_model_dir, metrics={"perplexity": 9.0})
    async with open_runtime(settings, loop=False) as runtime:
        assert runtime.generator.version == good


async def test_after_rejections_on_the_same_parent_the_next_run_takes_a_smaller_step(runtime, tmp_path):
    argv_file = tmp_path / "argv.txt"
    # The trainer's command line is what is under test: this launcher writes it down and stops.
    runtime.loop.runs.launcher = [
        sys.executable,
        "-c",
        f"import sys, pathlib; pathlib.Path({str(argv_file)!r}).write_text(' '.join(sys.argv[1:]))",
    ]
    await seed_preference(runtime.repository, answers=40)
    repository = runtime.repository

    async def earlier(status: str, parent: int = 0) -> None:
        run = await repository.start_training_run(parent_version=parent)
        await repository.finish_training_run(run, status=status, reason="seeded")

    def option(name: str) -> float:
        words = argv_file.read_text().split()
        return float(words[words.index(name) + 1])

    lr, beta = runtime.settings.train_learning_rate, 0.1
    await earlier("published")  # a streak starts after it
    await earlier("rejected")
    await earlier("skipped")  # neither counts nor breaks the streak
    await earlier("rejected")
    await runtime.loop.run_training()
    assert option("--learning-rate") == pytest.approx(lr / 4) and option("--beta") == pytest.approx(beta * 4)

    await earlier("published")  # the streak is over: the settings' own recipe again
    await runtime.loop.run_training()
    assert option("--learning-rate") == pytest.approx(lr) and option("--beta") == pytest.approx(beta)

    for _ in range(6):  # at most three halvings, however long the streak
        await earlier("rejected")
    await runtime.loop.run_training()
    assert option("--learning-rate") == pytest.approx(lr / 8)


async def test_the_trainer_gets_no_chat_token_signing_secret_dashboard_token_or_person_secret(
    settings_env, monkeypatch, tmp_path
):
    secrets = {
        "SLACK_BOT_TOKEN": "xoxb-secret-bot-token-1",
        "SLACK_SIGNING_SECRET": "secret-signing-secret-2",
        "SLACK_APP_TOKEN": "xapp-secret-app-token-3",
        "DISCORD_TOKEN": "secret-discord-token-4",
        "THUMBTUNE_DASHBOARD_TOKEN": "secret-dashboard-token-5",
        "THUMBTUNE_PERSON_SECRET": "secret-person-key-6",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("THUMBTUNE_ADAPTER", "shell")
    monkeypatch.setenv("MY_COPY_OF_THE_TOKEN", "xoxb-secret-bot-token-1")  # a secret under another name
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # what training needs stays
    seen = tmp_path / "trainer-env.json"
    async with open_runtime(load_settings()) as runtime:
        # The launcher is the process boundary under test: it writes down its environment and stops.
        runtime.loop.runs.launcher = [
            sys.executable,
            "-c",
            f"import json, os, pathlib; pathlib.Path({str(seen)!r}).write_text(json.dumps(dict(os.environ)))",
        ]
        await seed_preference(runtime.repository, answers=40)
        await runtime.loop.run_training()
    environment = json.loads(seen.read_text())
    leaked = [name for name, value in environment.items() if any(secret in value for secret in secrets.values())]
    assert leaked == [] and not [name for name in environment if name.startswith("THUMBTUNE_")]
    assert environment["HF_HOME"] == str(tmp_path / "hf") and environment["PATH"] == os.environ["PATH"]
