"""`thumbtune make-tiny-model DIR`: a small GPT-2 built and trained locally, offline.

A byte-level BPE tokenizer is trained on the dialogue text shipped in
``bot/data/dialogues.txt``, then a tiny GPT-2 is trained on the same text for a
few seconds, so its samples look like short chat answers rather than noise. The
result loads with ``from_pretrained(DIR)`` like any Hugging Face model. The same
seed gives the same files.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TinyModelSpec:
    vocab_size: int = 1024
    n_positions: int = 256
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    steps: int = 300
    batch_size: int = 16
    block_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0


def shipped_dialogues() -> str:
    return resources.files("bot.data").joinpath("dialogues.txt").read_text(encoding="utf-8")


def train_tokenizer(text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text.split("\n\n"), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS
    )


def make_tiny_model(out_dir: Path | str, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build, train and save the tiny model; returns the folder."""
    out_dir = Path(out_dir)
    started = time.monotonic()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    text = shipped_dialogues()
    tokenizer = train_tokenizer(text, spec.vocab_size)

    # Dialogues separated by EOS, as one stream of token ids.
    ids: list[int] = []
    for dialogue in text.split("\n\n"):
        ids.extend(tokenizer.encode(dialogue.strip()))
        ids.append(tokenizer.eos_token_id)
    data = torch.tensor(ids, dtype=torch.long)

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(spec.seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(spec.steps):
        starts = torch.randint(0, len(data) - spec.block_size - 1, (spec.batch_size,), generator=generator)
        batch = torch.stack([data[s : s + spec.block_size] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            log.debug("tiny model step %d loss %.3f", step, loss.item())
    model.eval()
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("tiny model written to %s (final loss %.2f, %.1f s)", out_dir, loss.item(), time.monotonic() - started)
    return out_dir
