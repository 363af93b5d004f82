"""`python -m bench.generation [--quick]`: the Generator against one-at-a-time `generate` calls.

GPT-2 small shape (GPT2Config(), random weights), fp32, 1 thread, 48 new tokens. For
N = 8 and 32 concurrent requests: throughput of the Generator (dynamic batching) and of
answering the same prompts one `model.generate` call at a time, their ratio, request
latency, and the event loop's lag during the load. Also batch-1 decode speed against the
memory-bandwidth bound measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import torch

from bench.common import LoopLag, emit, median, percentile, write_gpt2_small_shape
from bot.cli import quiet_libraries
from bot.generation import Generator, SamplingParams, load_model
from trainer.dialogue import render_prompt

QUESTIONS = [
    "what is the weather like", "do you like cats", "what should I eat", "can you help me",
    "where should I travel", "what music do you like", "I have too much work", "tell me something nice",
]


def prompts(n: int) -> list[str]:
    return [render_prompt(f"{QUESTIONS[i % len(QUESTIONS)]} ({i})") for i in range(n)]


def params(new_tokens: int) -> SamplingParams:
    return SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=new_tokens)


def sequential(folder: Path, texts: list[str], new_tokens: int) -> dict[str, float]:
    """The usual bot: one `generate` call per prompt, one after another."""
    loaded = load_model(folder, version=0, device="cpu")
    tokenizer, model = loaded.tokenizer, loaded.model
    tokens, latencies = 0, []
    started = time.perf_counter()
    for text in texts:
        asked = time.perf_counter()
        encoded = tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(
                **encoded, do_sample=True, temperature=0.9, top_p=0.95,
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
            )
        tokens += output.shape[1] - encoded["input_ids"].shape[1]
        latencies.append(time.perf_counter() - asked)
    elapsed = time.perf_counter() - started
    return {"tokens_per_s": tokens / elapsed, "seconds": elapsed, "tokens": tokens, "latencies": latencies}


async def through_generator(generator: Generator, texts: list[str], new_tokens: int) -> dict[str, float]:
    lag = LoopLag()
    lag.start()
    latencies: list[float] = []

    async def ask(text: str) -> int:
        asked = time.perf_counter()
        result = await generator.generate(text, params(new_tokens))
        latencies.append(time.perf_counter() - asked)
        return result.new_tokens

    started = time.perf_counter()
    counts = await asyncio.gather(*(ask(text) for text in texts))
    elapsed = time.perf_counter() - started
    lags = await lag.stop()
    return {
        "tokens_per_s": sum(counts) / elapsed,
        "seconds": elapsed,
        "tokens": sum(counts),
        "latencies": latencies,
        "lag_max_ms": lags["max_ms"],
        "lag_p99_ms": lags["p99_ms"],
    }


def read_bandwidth_bytes_per_s(megabytes: int = 512, repeats: int = 5) -> float:
    """Single-thread read bandwidth: sum a buffer far larger than the caches."""
    buffer = torch.ones(megabytes * 1024 * 1024 // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - started)
    return buffer.numel() * 4 / best


def batch1_decode_tokens_per_s(folder: Path, new_tokens: int) -> tuple[float, int]:
    """Decode speed at batch 1, prefill excluded: (t(1 + n) - t(1)) / n, best of 3."""
    loaded = load_model(folder, version=0, device="cpu")
    tokenizer, model = loaded.tokenizer, loaded.model
    encoded = tokenizer(render_prompt("what is the weather like"), return_tensors="pt")

    def timed(n: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(**encoded, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                           pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - started

    timed(2)  # warm-up
    one = min(timed(1) for _ in range(3))
    many = min(timed(1 + new_tokens) for _ in range(3))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return new_tokens / (many - one), weight_bytes


async def main_async(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    new_tokens = 16 if args.quick else 48
    result: dict = {"model": "GPT2Config() random weights", "dtype": "float32", "threads": 1,
                    "new_tokens": new_tokens, "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_gpt2_small_shape(Path(tmp) / "gpt2-small-shape")
        async with Generator(source=folder, batch_window_s=0.02, max_batch_rows=32, queue_size=128) as generator:
            for n in (8, 32):
                texts = prompts(n)
                # One at a time costs the same per prompt whatever N is; --quick times 8 of them.
                measured = texts[: min(n, 8)] if args.quick else texts
                seq = sequential(folder, measured, new_tokens)
                gen = await through_generator(generator, texts, new_tokens)
                result[f"sequential_tokens_per_s_{n}"] = round(seq["tokens_per_s"], 2)
                result[f"generator_tokens_per_s_{n}"] = round(gen["tokens_per_s"], 2)
                result[f"speedup_{n}"] = round(gen["tokens_per_s"] / seq["tokens_per_s"], 2)
                result[f"generator_latency_p50_s_{n}"] = round(median(gen["latencies"]), 3)
                result[f"generator_latency_p95_s_{n}"] = round(percentile(gen["latencies"], 95), 3)
                result[f"sequential_latency_p50_s_{n}"] = round(median(seq["latencies"]), 3)
                result[f"loop_lag_max_ms_{n}"] = round(gen["lag_max_ms"], 2)
                result[f"loop_lag_p99_ms_{n}"] = round(gen["lag_p99_ms"], 2)
        result["loop_lag_max_ms"] = max(result["loop_lag_max_ms_8"], result["loop_lag_max_ms_32"])
        result["loop_lag_p99_ms"] = max(result["loop_lag_p99_ms_8"], result["loop_lag_p99_ms_32"])
        decode, weight_bytes = batch1_decode_tokens_per_s(folder, new_tokens)
    bandwidth = read_bandwidth_bytes_per_s()
    bound = bandwidth / weight_bytes
    result.update(
        batch1_decode_tokens_per_s=round(decode, 2),
        weight_bytes=weight_bytes,
        read_bandwidth_gb_per_s=round(bandwidth / 1e9, 2),
        bandwidth_bound_tokens_per_s=round(bound, 2),
        decode_fraction_of_bound=round(decode / bound, 3),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 new tokens and 8 sequential prompts (< 1 min)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_libraries()
    emit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
