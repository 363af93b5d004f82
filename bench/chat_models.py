"""`python -m bench.chat_models [--quick]`: what a small instruct model costs on a CPU, against GPT-2.

No download: each model is built with random weights in the shape its published
``config.json`` gives (the weights do not change the cost), saved with the tiny chat
model's tokenizer, loaded the way the bot loads a model (``load_model``) and decoded
the way the bot decodes (``decode``), one conversation at a time, fp32, one thread:
a 32-token prompt, then 32 new tokens (greedy, no early stop), median of 3.
Prints one JSON object: per model, parameters, fp32 weight memory, load seconds,
prompt (prefill) seconds and ms per new token. ``--quick``: GPT-2 and SmolLM2-135M only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, LlamaConfig, PretrainedConfig, Qwen2Config

from bench.common import emit, median
from bot.generation import decode, load_model
from bot.tinymodel import TinyModelSpec, make_tiny_model

SHAPES: dict[str, PretrainedConfig] = {
    "gpt2 (the default)": GPT2Config(),
    "SmolLM2-135M-Instruct": LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    ),
    "SmolLM2-360M-Instruct": LlamaConfig(
        hidden_size=960,
        intermediate_size=2560,
        num_hidden_layers=32,
        num_attention_heads=15,
        num_key_value_heads=5,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    ),
    "Qwen2.5-0.5B-Instruct": Qwen2Config(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
    ),
}
QUICK = ("gpt2 (the default)", "SmolLM2-135M-Instruct")
PROMPT_TOKENS = NEW_TOKENS = 32


def measure(config: PretrainedConfig, tokenizer_dir: Path, folder: Path) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    del model
    started = time.perf_counter()
    loaded = load_model(folder, version=0, device="cpu")
    load_s = time.perf_counter() - started
    ids = torch.randint(0, min(1000, config.vocab_size), (1, PROMPT_TOKENS))
    mask = torch.ones_like(ids)

    def greedy(logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    prefill, totals = [], []
    for _ in range(3):
        started = time.perf_counter()
        decode(loaded.model, ids, mask, max_new_tokens=1, choose=greedy, stop_ids=())
        prefill.append(time.perf_counter() - started)
        started = time.perf_counter()
        decode(loaded.model, ids, mask, max_new_tokens=NEW_TOKENS, choose=greedy, stop_ids=())
        totals.append(time.perf_counter() - started)
    per_token = (median(totals) - median(prefill)) / (NEW_TOKENS - 1)
    return {
        "parameters_m": round(parameters / 1e6, 1),
        "fp32_weights_gb": round(parameters * 4 / 1e9, 2),
        "load_s": round(load_s, 2),
        "prompt_s": round(median(prefill), 3),
        "ms_per_new_token": round(per_token * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="GPT-2 and SmolLM2-135M only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = make_tiny_model(Path(tmp) / "tiny-llama", TinyModelSpec(arch="llama", steps=1))
        for name, config in SHAPES.items():
            if args.quick and name not in QUICK:
                continue
            results[name] = measure(config, tokenizer_dir, Path(tmp) / name.split()[0])
    emit({"models": results, "threads": 1, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS})


if __name__ == "__main__":
    main()
