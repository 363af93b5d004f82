"""`python -m bench.forward [--quick]`: bot.generation.gpt2's GPT-2 forward against transformers' own.

What ``bot.generation.gpt2.Gpt2Forward`` saves over ``GPT2LMHeadModel.forward`` with a
``DynamicCache`` (``bot.generation.TransformersForward``, the path every other model
type takes): the served model, GPT-2 small shape, fp32, 1 thread, batch 1, greedy, after
a short prompt and after a ~500-token one (a long conversation), where transformers'
cache is concatenated anew at every step. ``Gpt2Forward`` streams the weights through
the CPU kernel and fuses GELU; transformers' forward runs the model's own modules with
torch's kernels, as it does for every other model type. Both run in alternating rounds;
each figure is the median decoding step over all rounds.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2LMHeadModel

from bench.common import emit, median, quick_args, write_gpt2_small_shape
from bot.generation import TransformersForward, load_model
from bot.generation.gpt2 import Gpt2Forward
from storage.dialogue import render_prompt

Forward = Gpt2Forward | TransformersForward


@torch.inference_mode()
def step_seconds(forward: Forward, ids: torch.Tensor, steps: int) -> list[float]:
    """Greedy decoding of ``steps`` tokens after the prompt; the time of each step."""
    position = torch.arange(ids.shape[1]).unsqueeze(0)
    logits = forward(ids, position, None)
    position = position[:, -1:]
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        position = position + 1
        logits = forward(logits.argmax(dim=-1, keepdim=True), position, None)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    args = quick_args(__doc__, "2 rounds of 16 steps (< 1 min)")
    rounds, steps = (2, 16) if args.quick else (5, 48)
    result: dict[str, Any] = {"model": "GPT2Config() random weights", "threads": 1, "rounds": rounds, "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model(write_gpt2_small_shape(Path(tmp) / "m"), version=0, device="cpu")
        model, tokenizer = loaded.model, loaded.tokenizer
        assert isinstance(model, GPT2LMHeadModel)
        for name, text in (("short", "what is the weather like"), ("long", "what is the weather like " * 100)):
            ids = tokenizer(render_prompt(text), return_tensors="pt")["input_ids"]
            makers: dict[str, Callable[[], Forward]] = {
                "gpt2_forward": functools.partial(Gpt2Forward, model, capacity=ids.shape[1] + steps + 1),
                "transformers_forward": functools.partial(TransformersForward, model),
            }
            step_seconds(makers["gpt2_forward"](), ids, 2)  # warm-up
            seconds: dict[str, list[float]] = {key: [] for key in makers}
            for _ in range(rounds):
                for key, make in makers.items():
                    seconds[key] += step_seconds(make(), ids, steps)
            ours, theirs = (median(seconds[key]) * 1e3 for key in makers)
            result[f"prompt_tokens_{name}"] = ids.shape[1]
            result[f"ms_per_token_gpt2_forward_{name}"] = round(ours, 2)
            result[f"ms_per_token_transformers_forward_{name}"] = round(theirs, 2)
            result[f"speedup_{name}"] = round(theirs / ours, 3)
    emit(result)


if __name__ == "__main__":
    main()
