"""GPT-2's forward pass for sampling, with nothing sampling does not use.

``GPT2LMHeadModel.forward`` serves training, generation, cross-attention and every
attention backend, and each call of it builds masks, looks settings up in the config
and goes through seven module calls per layer. On one CPU thread, at one conversation,
that bookkeeping cost more per token than everything but the weight streaming itself
(``decode_ms_per_token_outside_kernel`` in ``python -m bench.generation``). ``Gpt2Forward``
does the same arithmetic with the model's own modules and weights, read in place, in a
few tensor operations per layer, and keeps keys and values in buffers written in place
instead of concatenated afresh at every step.

It covers what the bot serves: ``GPT2LMHeadModel`` without cross-attention, left-padded
batches, the prompt in one pass and then one token per step. ``supports`` says whether a
model is such; ``bot.generation.decoding.decode`` runs every other model through transformers.
tests/test_gpt2.py checks its logits against transformers' on padded batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel


def supports(model: torch.nn.Module) -> bool:
    """Whether ``Gpt2Forward`` computes exactly what this model's own forward does."""
    return isinstance(model, GPT2LMHeadModel) and not model.config.add_cross_attention


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
        self.wte, self.wpe, self.ln_f = body.wte.weight, body.wpe.weight, body.ln_f
        self.head = model.lm_head
        self.blocks = list(body.h)
        first = self.blocks[0].attn
        self.heads, self.head_dim = first.num_heads, first.head_dim
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
        options = {"dtype": self.wte.dtype, "device": self.wte.device}
        for store in (self.keys, self.values):
            grown = [torch.empty(shape, **options) for _ in self.blocks]
            for old, new in zip(store, grown):
                new[:, :, : self.length] = old[:, :, : self.length]
            store[:] = grown

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows (indexes into the current batch) go on."""
        self.keys = [buffer[rows] for buffer in self.keys]
        self.values = [buffer[rows] for buffer in self.values]

    def _attention_mask(self, mask: torch.Tensor | None, new: int, end: int) -> torch.Tensor | None:
        """Which keys each new position sees ([rows, 1, new, end], True = attend), or None for
        plain causal attention (no padding, and either one new token or an empty cache)."""
        if mask is None and (new == 1 or self.length == 0):
            return None
        if new == 1:  # the one new token sees every real token (itself included)
            return mask[:, None, None, :end].bool()
        device = self.wte.device
        query = torch.arange(self.length, end, device=device).unsqueeze(-1)   # [new, 1]
        key = torch.arange(end, device=device)
        sees = key <= query                                                    # causal, [new, end]
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
        for block, keys, values in zip(self.blocks, self.keys, self.values):
            attn, mlp = block.attn, block.mlp
            q, k, v = attn.c_attn(block.ln_1(hidden)).view(rows, new, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            keys[:, :, start:end] = k
            values[:, :, start:end] = v
            out = F.scaled_dot_product_attention(
                q, keys[:, :, :end], values[:, :, :end], attn_mask=sees, is_causal=causal, scale=attn.scaling,
            )
            hidden = hidden + attn.c_proj(out.transpose(1, 2).reshape(rows, new, -1))
            hidden = hidden + mlp.c_proj(mlp.act(mlp.c_fc(block.ln_2(hidden))))
        self.length = end
        return self.head(self.ln_f(hidden[:, -1]))
