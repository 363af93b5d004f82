"""Champion vs challenger: the previous version stays loaded and answers its share."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from bot.events import IncomingPrompt
from bot.generation import Generator, SamplingParams


async def test_generator_keeps_the_previous_version_only_when_asked(tiny_model_dir):
    params = SamplingParams(max_new_tokens=4)
    async with Generator(source=tiny_model_dir, version=0, keep_previous=True) as generator:
        assert generator.previous_version is None
        await generator.swap(tiny_model_dir, 1)
        assert (generator.version, generator.previous_version) == (1, 0)
        old, new, unknown = await asyncio.gather(
            generator.generate("User: hi\nBot:", params, version=0),
            generator.generate("User: hi\nBot:", params),
            generator.generate("User: hi\nBot:", params, version=7),
        )
        assert (old.model_version, new.model_version, unknown.model_version) == (0, 1, 1)
        await generator.swap(tiny_model_dir, 2)
        assert generator.previous_version == 1  # version 0 is released
        released, kept = await asyncio.gather(
            generator.generate("User: hi\nBot:", params, version=0),
            generator.generate("User: hi\nBot:", params, version=1),
        )
        assert (released.model_version, kept.model_version) == (2, 1)
    async with Generator(source=tiny_model_dir, version=0) as generator:
        await generator.swap(tiny_model_dir, 1)
        assert generator.previous_version is None


async def _challenger_runtime(monkeypatch, share: str):
    from bot.app import open_runtime
    from bot.settings import load_settings

    monkeypatch.setenv("THUMBTUNE_CHALLENGER_SHARE", share)
    monkeypatch.setenv("THUMBTUNE_MAX_NEW_TOKENS", "4")
    return open_runtime(load_settings(), loop=False)


async def _stored_versions(running) -> dict[int, list[int]]:
    """prompt id -> model version of each candidate, in candidate order."""
    async with running.database.reading() as db:
        cursor = await db.execute("SELECT prompt_id, model_version FROM responses ORDER BY prompt_id, candidate")
        rows = await cursor.fetchall()
    versions: dict[int, list[int]] = {}
    for prompt_id, version in rows:
        versions.setdefault(prompt_id, []).append(version)
    return versions


async def test_a_share_of_answers_comes_from_the_previous_version(settings_env, tiny_model_dir, monkeypatch):
    async with await _challenger_runtime(monkeypatch, "0.25") as running:
        service = running.service
        service.answers.rng = random.Random(1234)
        await running.generator.swap(tiny_model_dir, 1)
        requests = 400

        async def ask(i: int):
            return await service.on_prompt(IncomingPrompt(platform="shell", channel="local", user="me", text=f"q{i}"))

        replies = []
        for start in range(0, requests, 50):  # 50 at a time: batched, within the queue size
            replies += await asyncio.gather(*(ask(i) for i in range(start, start + 50)))
        assert all(reply.ok for reply in replies)
        stored = await _stored_versions(running)
        counts = Counter(versions[0] for versions in stored.values())
        assert set(counts) == {0, 1} and sum(counts.values()) == requests
        # Binomial(400, 0.25): sd = 8.7 answers, so +-35 is four standard deviations.
        assert abs(counts[0] - 100) <= 35, counts
        assert sorted(reply.model_version for reply in replies) == sorted(v[0] for v in stored.values())


async def test_each_comparison_pits_the_current_version_against_the_previous(settings_env, tiny_model_dir, monkeypatch):
    async with await _challenger_runtime(monkeypatch, "0.1") as running:
        service = running.service
        service.answers.rng = random.Random(99)
        await running.generator.swap(tiny_model_dir, 1)
        replies = []
        for start in range(0, 120, 24):  # 48 requests at a time, within the queue size
            replies += await asyncio.gather(
                *(
                    service.on_prompt(
                        IncomingPrompt(platform="shell", channel="local", user="me", text=f"compare: q{i}")
                    )
                    for i in range(start, start + 24)
                )
            )
        stored = await _stored_versions(running)
        assert len(stored) == 120
        assert all(sorted(versions) == [0, 1] for versions in stored.values())
        assert sorted(tuple(reply.versions) for reply in replies) == sorted(tuple(v) for v in stored.values())
        old_first = sum(versions[0] == 0 for versions in stored.values())
        # Random side: Binomial(120, 0.5), sd 5.5; +-25 is over four standard deviations.
        assert abs(old_first - 60) <= 25, old_first


async def test_no_share_means_no_previous_version_answers(settings_env, tiny_model_dir, monkeypatch):
    async with await _challenger_runtime(monkeypatch, "0") as running:
        await running.generator.swap(tiny_model_dir, 1)
        assert running.generator.previous_version is None
        reply = await running.service.on_prompt(
            IncomingPrompt(platform="shell", channel="l", user="me", text="compare: x")
        )
        assert reply.versions == (1, 1)


async def test_after_a_restart_the_served_versions_parent_is_the_challenger(settings, tiny_model_dir, monkeypatch):
    import shutil

    from bot.app import open_runtime
    from bot.settings import load_settings
    from storage.registry import ModelRegistry

    registry = ModelRegistry(settings.registry_uri)
    for parent in (0, 1):  # versions 1 and 2: copies of the tiny model
        with registry.staging() as folder:
            shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
            registry.publish(folder, parent=parent)
    monkeypatch.setenv("THUMBTUNE_CHALLENGER_SHARE", "1")
    async with open_runtime(load_settings(), loop=False) as running:
        assert (running.generator.version, running.generator.previous_version) == (2, 1)
        reply = await running.service.on_prompt(IncomingPrompt(platform="shell", channel="l", user="me", text="hi"))
        assert reply.model_version == 1  # a share of 1: every single answer from the challenger
        reply = await running.service.on_prompt(
            IncomingPrompt(platform="shell", channel="l", user="me", text="compare: hi")
        )
        assert sorted(reply.versions) == [1, 2]
    monkeypatch.setenv("THUMBTUNE_CHALLENGER_SHARE", "0")
    async with open_runtime(load_settings(), loop=False) as running:
        assert (running.generator.version, running.generator.previous_version) == (2, None)
