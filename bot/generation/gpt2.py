"""GPT-2's forward pass for sampling, with nothing sampling does not use.

``GPT2LMHeadModel.forward`` serves training, generation, cross-attention and every
attention backend, and each call of it builds masks, looks settings up in the config
and goes through seven module calls per layer. On one CPU thread, at one conversation,
that bookkeeping cost more per token than everything but the weight streaming itself
(``decode_ms_per_token_outside_kernel`` in ``python -m bench.generation``). ``Gpt2Forward``
does the same arithmetic with the model's own weights, read in place, in a few tensor
operations per layer, and keeps keys and values in buffers written in place instead of
concatenated afresh at every step. Its products with a weight go through
``bot.generation.kernels.Linear`` (the CPU kernel where it applies), and GPT-2's
activation (``gelu_new``, seven tensor operations) through torch's one fused op, the same
formula. ``lay_out_for_kernel`` stores the ``Conv1D`` weights once, at load, in the
layout the kernel streams; the model's modules stay as loaded.

It covers what the bot serves: ``GPT2LMHeadModel`` without cross-attention, left-padded
batches, the prompt in one pass and then one token per step. ``supports`` says whether a
model is such; ``bot.generation.decoding.decode`` runs every other model through transformers.
tests/test_gpt2.py checks its logits against transformers' on padded batches.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeGuard, cast

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel
from transformers.activations import NewGELUActivation
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention, GPT2Block
from transformers.pytorch_utils import Conv1D

from bot.generation.kernels import Linear, available


def supports(model: torch.nn.Module) -> TypeGuard[GPT2LMHeadModel]:
    """Whether ``Gpt2Forward`` computes exactly what this model's own forward does."""
    return isinstance(model, GPT2LMHeadModel) and not model.config.add_cross_attention


def lay_out_for_kernel(model: torch.nn.Module) -> int:
    """Store each ``Conv1D`` weight ([in, out]) as the transpose of a contiguous [out, in] tensor.

    ``Gpt2Forward`` multiplies by ``weight.t()``, which is then contiguous: the layout the
    CPU kernel streams (``torch.nn.Linear``'s). The values and shapes stay, only the
    strides change, so the model's own forward computes what it did. Does nothing where
    the kernel cannot run (not built, not this CPU, not a float32 CPU model). Returns how
    many weights were laid out anew.
    """
    if not (available() and supports(model)):
        return 0
    laid = 0
    for module in model.modules():
        weight = module.weight if isinstance(module, Conv1D) else None
        if weight is None or not (weight.is_cpu and weight.dtype == torch.float32 and weight.is_contiguous()):
            continue
        # One matrix at a time: loading needs memory for one more weight, not a model's worth.
        module.weight = torch.nn.Parameter(weight.detach().t().contiguous().t(), requires_grad=weight.requires_grad)
        laid += 1
    return laid


def _activation(act: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    # gelu_new is the tanh approximation written out as seven operations: the same formula
    # in one operator is ~70 fewer operator calls per GPT-2 small token, float rounding apart.
    if isinstance(act, NewGELUActivation):
        return partial(F.gelu, approximate="tanh")
    return act


class _Norm:
    """A ``LayerNorm``'s parameters, applied without a module call."""

    __slots__ = ("bias", "eps", "shape", "weight")

    def __init__(self, norm: torch.nn.LayerNorm) -> None:
        self.shape, self.weight, self.bias, self.eps = norm.normalized_shape, norm.weight, norm.bias, norm.eps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


def _scaling(attn: GPT2Attention) -> float:
    """The factor on q·k: 1/sqrt(head_dim), and 1/(layer + 1) where the config asks for it.
    From the config's own switches: the attention of transformers 5.0 keeps no ``scaling``."""
    scaling = float(attn.head_dim) ** -0.5 if attn.scale_attn_weights else 1.0
    if attn.scale_attn_by_inverse_layer_idx:
        scaling /= float(attn.layer_idx + 1)
    return scaling


class _Block:
    """One transformer layer's weights, each product through ``kernels.Linear``."""

    __slots__ = ("act", "attn_out", "fc", "ln_1", "ln_2", "mlp_out", "qkv", "scaling")

    def __init__(self, block: GPT2Block) -> None:
        attn, mlp = block.attn, block.mlp
        self.ln_1, self.ln_2 = _Norm(block.ln_1), _Norm(block.ln_2)
        # Conv1D computes x @ weight + bias with weight [in, out]: weight.t() is [out, in].
        self.qkv = Linear(attn.c_attn.weight.t(), attn.c_attn.bias)
        self.attn_out = Linear(attn.c_proj.weight.t(), attn.c_proj.bias)
        self.scaling = _scaling(attn)
        self.fc = Linear(mlp.c_fc.weight.t(), mlp.c_fc.bias)
        self.act = _activation(mlp.act)
        self.mlp_out = Linear(mlp.c_proj.weight.t(), mlp.c_proj.bias)


class Gpt2Forward:
    """One decoding session of a GPT-2 model: its key/value buffers and where they end.

    ``__call__(ids, positions, mask)`` appends ``ids`` ([rows, t]) to every row and returns
    the logits of each row's last position ([rows, vocab]). ``mask`` ([rows, all tokens so
    far], 1 for a token, 0 for left padding) may be None when no row is padded. Callers run
    it under ``torch.inference_mode()``, as ``bot.generation.decoding.decode`` does for its whole loop.
    """

    def __init__(self, model: GPT2LMHeadModel, capacity: int) -> None:
        if not supports(model):
            raise ValueError(f"Gpt2Forward runs GPT2LMHeadModel without cross-attention, not {type(model).__name__}")
        body = model.transformer
        self.wte, self.wpe = body.wte.weight, body.wpe.weight
        self.ln_f = _Norm(body.ln_f)
        self.head = Linear(model.lm_head.weight, model.lm_head.bias)  # tied to wte: read in place
        layers = cast(list[GPT2Block], list(body.h))
        self.blocks = [_Block(block) for block in layers]
        first = layers[0].attn
        self.heads: int = first.num_heads
        self.head_dim: int = first.head_dim
        self.capacity = capacity
        self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def _reserve(self, rows: int, length: int) -> None:
        """Key/value buffers for ``length`` tokens: allocated once, grown by doubling."""
        if self.keys and length <= self.keys[0].shape[2]:
            return
        capacity = max(length, self.capacity, 2 * (self.keys[0].shape[2] if self.keys else 0))
        shape = (rows, self.heads, capacity, self.head_dim)
        for store in (self.keys, self.values):
            grown = [torch.empty(shape, dtype=self.wte.dtype, device=self.wte.device) for _ in self.blocks]
            for old, new in zip(store, grown, strict=False):  # nothing to copy the first time
                new[:, :, : self.length] = old[:, :, : self.length]
            store[:] = grown

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows (indexes into the current batch) go on."""
        self.keys = [buffer[rows] for buffer in self.keys]
        self.values = [buffer[rows] for buffer in self.values]

    def _attention_mask(self, mask: torch.Tensor | None, new: int, end: int) -> torch.Tensor | None:
        """Which keys each new position sees ([rows, 1, new, end], True = attend), or None for
        plain causal attention (no padding, and either one new token or an empty cache)."""
        if new == 1:  # the one new token sees every real token (itself included)
            return None if mask is None else mask[:, None, None, :end].bool()
        if mask is None and self.length == 0:
            return None
        device = self.wte.device
        query = torch.arange(self.length, end, device=device).unsqueeze(-1)  # [new, 1]
        key = torch.arange(end, device=device)
        sees = key <= query  # causal, [new, end]
        if mask is not None:
            # A padding position sees itself, so that no row of the softmax is empty: torch's
            # CPU kernels give zeros for an empty row, not every GPU kernel does (NaN). Real
            # tokens never see padding, so what padding computes goes nowhere.
            sees = (sees & mask[:, None, None, :end].bool()) | (key == query)
        return sees if sees.dim() == 4 else sees[None, None]

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        rows, new = ids.shape
        start, end = self.length, self.length + new
        self._reserve(rows, end)
        sees = self._attention_mask(mask, new, end)
        causal = sees is None and new > 1
        hidden = F.embedding(ids, self.wte) + F.embedding(positions, self.wpe)
        for block, keys, values in zip(self.blocks, self.keys, self.values, strict=True):
            q, k, v = block.qkv(block.ln_1(hidden)).view(rows, new, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            keys[:, :, start:end] = k
            values[:, :, start:end] = v
            out = F.scaled_dot_product_attention(
                q,
                keys[:, :, :end],
                values[:, :, :end],
                attn_mask=sees,
                is_causal=causal,
                scale=block.scaling,
            )
            hidden = hidden + block.attn_out(out.transpose(1, 2).reshape(rows, new, -1))
            hidden = hidden + block.mlp_out(block.act(block.fc(block.ln_2(hidden))))
        self.length = end
        return self.head(self.ln_f(hidden[:, -1]))
