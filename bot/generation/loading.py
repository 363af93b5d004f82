"""Loading a model for serving: the device, the weights and tokenizer, the Hub check.

``load_model`` reads a local folder or the Hugging Face cache first and asks the Hub only
when it answers (a quick TCP probe), so an offline machine fails in seconds with one
message naming ``THUMBTUNE_MODEL``. The tokenizer is set up for left-padded batches.
"""

from __future__ import annotations

import base64
import logging
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bot.generation.errors import ModelLoadError
from bot.generation.gpt2 import lay_out_for_kernel
from storage.dialogue import ModelDialogue, stop_token_ids
from storage.reward import RewardHead

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    version: int
    source: str
    device: torch.device
    max_positions: int
    dialogue: ModelDialogue  # User:/Bot: lines, or the tokenizer's chat template
    stop_ids: frozenset[int]  # tokens that end an answer (end of text, end of turn)
    reward: RewardHead | None = None  # the version's reward model (trained versions), ranks candidates


def pick_device(device: str) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelLoadError("THUMBTUNE_DEVICE=cuda but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def load_model(source: str | Path, *, version: int, device: str = "auto") -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for left-padded batched sampling."""
    source = str(source)
    target = pick_device(device)
    dtype = torch.float32
    if target.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    local = Path(source).is_dir()
    try:
        try:
            # The local folder or the Hugging Face cache first: no network wait when cached.
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=True)
        except OSError:
            if local or not hub_reachable():
                raise
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except Exception as exc:  # OSError, ValueError, a SafetensorError for damaged weights, ...
        if local:
            reason = " ".join(str(exc).split())[:240] or type(exc).__name__
            raise ModelLoadError(f"THUMBTUNE_MODEL folder {source} is not a loadable model: {reason}") from exc
        raise ModelLoadError(
            f"Could not load model {source!r}: it is not in the local Hugging Face cache and the Hub "
            "could not be reached (offline?). Set THUMBTUNE_MODEL to a local model folder, e.g. one "
            "made with `thumbtune make-tiny-model models/tiny` and THUMBTUNE_MODEL=models/tiny."
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues from the right edge
    tokenizer.truncation_side = "left"  # an over-long prompt keeps its newest text
    model.to(target)  # type: ignore[arg-type]  # transformers wraps .to with functools.wraps, losing the bound self
    model.eval()
    if target.type == "cpu":
        lay_out_for_kernel(model)  # batch-1 decoding at memory speed (bot/generation/kernels.py)
    config = model.config
    max_positions = int(
        getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 1024
    )
    stops = frozenset(stop_token_ids(tokenizer, model.generation_config))
    reward = RewardHead.load(source) if local else None  # a trained version keeps its reward model beside it
    if reward is not None and not reward.ranks:
        log.info(
            "version %d's reward model has no held-out evidence that it beats chance (AUC %s): "
            "it does not rank, one answer is sampled per prompt",
            version,
            "n/a" if reward.auc is None else f"{reward.auc:.2f}, 95% interval {reward.auc_interval}",
        )
        reward = None
    return LoadedModel(
        model, tokenizer, version, source, target, max_positions, ModelDialogue(tokenizer), stops, reward
    )


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """A quick probe, so an offline machine fails in seconds, not after minutes of retries.

    Through the proxy the environment names (``HTTPS_PROXY``, unless ``NO_PROXY`` exempts
    the Hub's host), as the download itself would go: a TCP connection to the Hub, or an
    HTTP ``CONNECT`` to it through the proxy. At most about twice ``timeout_s``.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = _proxy_for(url.scheme, host)
    try:
        if proxy is None:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        with socket.create_connection((proxy.hostname or "", proxy.port or 80), timeout=timeout_s) as connection:
            request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            if proxy.username:
                secret = base64.b64encode(f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode())
                request += f"Proxy-Authorization: Basic {secret.decode()}\r\n"
            connection.sendall((request + "\r\n").encode())
            status = connection.recv(64).split(b" ", 2)
            return len(status) > 1 and status[1] == b"200"
    except OSError:
        return False


def _proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy a request to ``scheme://host`` goes through, from the environment; None: direct."""
    address = urllib.request.getproxies().get(scheme)
    if not address or urllib.request.proxy_bypass(host):
        return None
    return urlsplit(address if "://" in address else f"http://{address}")
