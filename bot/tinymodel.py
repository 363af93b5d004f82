"""`thumbtune make-tiny-model DIR [--arch gpt2|llama]`: a small model built and trained locally, offline.

A byte-level BPE tokenizer is trained on the dialogue text shipped in
``bot/data/dialogues.txt``, then a tiny model is trained on the same text for a
few seconds, so its samples look like short chat answers rather than noise. The
result loads with ``from_pretrained(DIR)`` like any Hugging Face model. The same
seed gives the same files.

- ``gpt2`` (default): a GPT-2 that continues ``User:`` / ``Bot:`` lines, as the bot's
  default model ``gpt2`` does;
- ``llama``: a Llama-architecture *chat* model, as small instruct models are (SmolLM2,
  Qwen2.5 and Llama 3 are this shape or close to it): its tokenizer has a ChatML chat
  template, and it learned to end each answer with ``<|im_end|>``.
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
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from bot.dialoguegen import dialogues
from storage.dialogue import chat_messages, dialogue_turns

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
ARCHITECTURES = ("gpt2", "llama")
# ChatML, as SmolLM2-Instruct and Qwen2.5-Instruct write it.
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


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
    arch: str = "gpt2"  # or "llama": a chat model with a chat template
    varied: int = 0  # > 0: trained on this many generated dialogues (bot.dialoguegen), not the shipped text


# The varied test model: many generated dialogues, a little bigger, longer to build.
VARIED = TinyModelSpec(n_embd=64, n_layer=2, n_head=2, steps=700, batch_size=16, block_size=96, varied=8000)


def shipped_dialogues() -> str:
    return resources.files("bot.data").joinpath("dialogues.txt").read_text(encoding="utf-8")


def train_tokenizer(text: str, vocab_size: int, *, chat: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer; with ``chat``, ChatML's turn tokens and chat template too."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, IM_START, IM_END] if chat else [EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text.split("\n\n"), trainer=trainer)
    if not chat:
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS
        )
    # An instruct model's tokenizer: end of sequence is the end of a turn, padding apart.
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=IM_START,
        eos_token=IM_END,
        unk_token=EOS,
        pad_token=EOS,
        additional_special_tokens=[IM_START],
    )
    fast.chat_template = CHATML
    return fast


def _training_text(text: str, tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """The dialogues as the model will see them: as written, or through the chat template."""
    dialogues = [dialogue.strip() for dialogue in text.split("\n\n") if dialogue.strip()]
    if not tokenizer.chat_template:
        return dialogues
    return [
        str(tokenizer.apply_chat_template(chat_messages(dialogue_turns(dialogue)), tokenize=False))
        for dialogue in dialogues
    ]


def _model(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    if spec.arch == "llama":
        llama = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.n_embd,
            intermediate_size=4 * spec.n_embd,
            num_hidden_layers=spec.n_layer,
            num_attention_heads=spec.n_head,
            num_key_value_heads=1,  # grouped-query attention, as the small Llamas have
            max_position_embeddings=spec.n_positions,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return LlamaForCausalLM(llama)
    if spec.arch != "gpt2":
        raise ValueError(f"unknown architecture {spec.arch!r}: one of {', '.join(ARCHITECTURES)}")
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
    return GPT2LMHeadModel(config)


def make_tiny_model(out_dir: Path | str, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build, train and save the tiny model; returns the folder."""
    out_dir = Path(out_dir)
    started = time.monotonic()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    text = dialogues(spec.varied, seed=spec.seed) if spec.varied else shipped_dialogues()
    tokenizer = train_tokenizer(text, spec.vocab_size, chat=spec.arch == "llama")

    # Dialogues separated by the end-of-text token, as one stream of token ids.
    ids: list[int] = []
    separator = tokenizer.convert_tokens_to_ids(EOS)
    assert isinstance(separator, int)
    for dialogue in _training_text(text, tokenizer):
        ids.extend(tokenizer.encode(dialogue, add_special_tokens=False))
        ids.append(separator)
    data = torch.tensor(ids, dtype=torch.long)
    model = _model(spec, tokenizer)
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
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("tiny model written to %s (final loss %.2f, %.1f s)", out_dir, loss.item(), time.monotonic() - started)
    return out_dir
