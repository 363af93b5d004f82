"""Loading a model to train or evaluate (the trainer never imports the bot's generator)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def training_device(device: str, *, local_rank: int | None = None) -> torch.device:
    """The device to train on; with several processes on one host, this process's own GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no CUDA device")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
    return torch.device("cpu")


def load_causal_lm(source: str | Path, *, device: torch.device) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (fp32: bf16 on CUDA comes from mixed precision) and tokenizer from a folder or name."""
    source = str(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)  # type: ignore[arg-type]  # transformers wraps .to with functools.wraps, losing the bound self
    return model, tokenizer
