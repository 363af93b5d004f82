"""Training speed and the learning effect: `python -m bench.training [--quick] [--device cuda]`.

1. Seconds per KTO step and examples/s for the tiny model and for the GPT-2 small
   shape (``GPT2Config()``, random weights, no download), through the same
   ``train_kto`` the trainer uses.
2. The learning effect on the tiny model: it answers the probe questions, simulated
   people vote 👍 on answers containing one word and 👎 on the rest, one full
   training run (dataset -> KTO -> eval gate -> registry) follows, and the share of
   sampled answers containing the word is measured before and after, with the
   gate's fluency metric (reference-text perplexity) beside it.

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bench.common import record_voted_answer
from bot.snapshots import prepare
from storage.database import Database
from storage.dialogue import render_prompt
from storage.registry import ModelRegistry
from storage.repository import Repository
from trainer import snapshot
from trainer.config import DataConfig, GateConfig, TrainConfig
from trainer.dataset import Example, FeedbackDataset
from trainer.evaluate import perplexity, reference_text, sample_answers
from trainer.job import RunOptions, run, train_kto
from trainer.models import load_causal_lm, training_device

QUESTIONS = (
    "hi",
    "what is your favourite food",
    "can you suggest a dinner",
    "do you like pizza",
    "I need some advice",
    "tell me something nice",
    "how can I focus",
    "what should I pack",
    "I have too much work",
    "hello bot",
    "what is the weather like",
    "can you recommend a song",
    "where should I travel",
    "I am tired of my job",
)


def synthetic_dataset(n: int, seed: int) -> FeedbackDataset:
    """Half liked, half disliked answers in the bot's template (for timing only)."""
    rng = random.Random(seed)
    answers = [
        "I like apples and fresh bread.",
        "Take a short break, then do one small task at a time.",
        "It looks sunny and warm today.",
        "Pack light and bring a good book.",
    ]
    train = tuple(
        Example(
            prompt=render_prompt(rng.choice(QUESTIONS)),
            completion=" " + rng.choice(answers),
            label=i % 2 == 0,
            group=str(i),
        )
        for i in range(n)
    )
    return FeedbackDataset(train=train, held_out=(), train_pairs=(), held_out_pairs=())


def time_training(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, steps: int, batch_size: int, scratch: Path
) -> dict[str, float]:
    import copy

    reference = copy.deepcopy(model).eval()
    dataset = synthetic_dataset(steps * batch_size, seed=0)
    # One warm-up step first: allocation and kernel selection are not the steady state.
    config = TrainConfig(
        max_steps=1,
        batch_size=batch_size,
        device="cuda" if next(model.parameters()).is_cuda else "cpu",
        checkpoints=1,  # the step's own cost, without copies of the weights for early stopping
    )
    model, _, _ = train_kto(
        model=model, reference=reference, tokenizer=tokenizer, dataset=dataset, config=config, scratch=scratch
    )
    config = TrainConfig(max_steps=steps, batch_size=batch_size, device=config.device, checkpoints=1)
    _, stats, _ = train_kto(
        model=model, reference=reference, tokenizer=tokenizer, dataset=dataset, config=config, scratch=scratch
    )
    return {
        "steps": stats.steps,
        "batch_size": batch_size,
        "seconds_per_step": round(stats.seconds / max(stats.steps, 1), 4),
        "examples_per_s": round(stats.examples_per_s, 2),
    }


def gpt2_small_shape(tokenizer: PreTrainedTokenizerBase, device: torch.device) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model = GPT2LMHeadModel(config)
    model.to(device)  # type: ignore[arg-type]  # transformers wraps .to with functools.wraps, losing the bound self
    return model


def share_with(word: str, answers: list[str]) -> float:
    return sum(word in answer.lower() for answer in answers) / max(len(answers), 1)


async def learning_effect(
    tiny: Path, work: Path, *, word: str, answers: int, epochs: float, lr: float, lora: bool = False
) -> dict[str, object]:
    device = torch.device("cpu")
    model, tokenizer = load_causal_lm(tiny, device=device)
    prompts = [render_prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(answers)]
    before = sample_answers(model, tokenizer, prompts, max_new_tokens=24, seed=1)
    ppl_before = perplexity(model, tokenizer, reference_text())

    db = work / "effect.db"
    async with await Database.open(db) as database:
        repository = Repository(database)
        # The bot's own answers (on-policy), voted on by two simulated people.
        for prompt_text, prompt, text in zip(
            (QUESTIONS[i % len(QUESTIONS)] for i in range(answers)), prompts, before, strict=True
        ):
            await record_voted_answer(
                repository, question=prompt_text, context=prompt, answer=text, liked=word in text.lower()
            )
        # What the bot hands the trainer: a snapshot of the data (the trainer never opens the database).
        started = time.monotonic()
        prepared = await prepare(repository, DataConfig(min_examples=8), run=1, parent=0, base_model=str(tiny))
    uri = snapshot.run_uri(str(work / "artifacts"), 1)
    snapshot.write(uri, prepared.manifest, prepared.dataset)
    result = run(
        RunOptions(
            snapshot=uri,
            registry=str(work / "models"),
            train=TrainConfig(epochs=epochs, learning_rate=lr, lora=lora),
            gate=GateConfig(),
        )
    )
    seconds = time.monotonic() - started
    effect: dict[str, object] = {
        "word": word,
        "answers_voted": answers,
        "share_before": round(share_with(word, before), 3),
        "perplexity_before": round(ppl_before, 3),
        "run_status": result.status,
        "run_seconds": round(seconds, 1),
        "gate_reason": result.reason,
        "learning_rate": lr,
        "epochs": epochs,
        "lora": lora,
    }
    if result.version is not None:
        trained, _ = load_causal_lm(work / "models" / "versions" / f"{result.version:04d}", device=device)
        # A fresh, larger sample from both models (same seed), so the shares are comparable.
        fresh = [render_prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(2 * answers)]
        after = sample_answers(trained, tokenizer, fresh, max_new_tokens=24, seed=2)
        base_again = sample_answers(model, tokenizer, fresh, max_new_tokens=24, seed=2)
        effect.update(
            fresh_sample=len(fresh),
            share_before_fresh_sample=round(share_with(word, base_again), 3),
            share_after=round(share_with(word, after), 3),
            perplexity_after=round(perplexity(trained, tokenizer, reference_text()), 3),
            preference_accuracy=result.metrics.get("preference_accuracy"),
            train_steps=result.metrics.get("train_steps"),
            counts=dict(ModelRegistry(work / "models").get(result.version).counts),
        )
    return effect


def timings(tiny: Path, work: Path, *, device: torch.device, steps: int) -> dict[str, object]:
    out: dict[str, object] = {}
    model, tokenizer = load_causal_lm(tiny, device=device)
    out[f"tiny_{device.type}"] = time_training(model, tokenizer, steps=steps, batch_size=4, scratch=work / "s1")
    big = gpt2_small_shape(tokenizer, device)
    out[f"gpt2_small_{device.type}"] = time_training(
        big, tokenizer, steps=max(2, steps // 3) if device.type == "cpu" else steps, batch_size=4, scratch=work / "s2"
    )
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["bf16"] = torch.cuda.is_bf16_supported()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and answers")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device for the GPT-2 small timing")
    parser.add_argument("--word", default="fresh", help="the word simulated voters favour")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-effect", action="store_true", help="timings only")
    parser.add_argument("--skip-timing", action="store_true", help="learning effect only")
    parser.add_argument("--lora", action="store_true", help="the learning run trains LoRA adapters (rank 8)")
    parser.add_argument("--lr", type=float, default=TrainConfig.learning_rate, help="learning rate of the learning run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)

    from bot.tinymodel import make_tiny_model  # the bench may use the bot's tiny-model maker

    steps = 4 if args.quick else 12
    report: dict[str, object] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = make_tiny_model(work / "tiny")
        if not args.skip_timing:
            report.update(timings(tiny, work, device=training_device(args.device), steps=steps))
        if not args.skip_effect:
            report["learning_effect"] = asyncio.run(
                learning_effect(
                    tiny,
                    work,
                    word=args.word,
                    answers=64 if args.quick else 160,
                    epochs=2.0,
                    lr=args.lr,
                    lora=args.lora,
                )
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
