"""Decoding on one CPU thread at memory speed: linear layers backed by ``bot.generation._matvec``.

Each generated token of one conversation multiplies a single row of activations by every
weight matrix of the model, so decoding at batch 1 is bound by how fast the weights
stream from memory. On the project's 2-core machine torch's kernels read GPT-2's layer
weights at about half the speed a plain ``sum()`` reads memory, and the small C kernel in
``bot/generation/_matvec.c`` (AVX2 + FMA) at 0.83-0.86 of it (``python -m bench.matvec``).
``StreamingLinear`` uses it for products of up to ``MAX_ROWS`` rows, without autograd,
on one torch thread; everything else (prompts, larger batches, training, more threads)
goes to ``torch.nn.functional.linear``, as does every call on a machine where the
extension was not built (no C compiler) or the CPU lacks AVX2/FMA.

The kernel's own results differ from torch's only by float rounding (a different
summation order); tests/test_matvec.py checks it against ``F.linear``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

try:
    from bot.generation import _matvec
except ImportError:  # installed without a C compiler, or not built for this platform
    _matvec = None

log = logging.getLogger(__name__)

#: Up to this many rows the kernel beats torch on one thread; more rows' activations no
#: longer fit in L1 beside the weight stream (``python -m bench.matvec``: GPT-2's layers,
#: 1 row 13.9 vs 23.5 ms, 2 rows 18.6 vs 42.9, 4 rows 26.4 vs 35.7).
MAX_ROWS = 4


def kernel_available() -> bool:
    """True when ``bot.generation._matvec`` was built and this CPU runs it."""
    return _matvec is not None and _matvec.available()


class StreamingLinear(torch.nn.Module):
    """``y = x @ weight.T + bias`` (weight [out, in], as ``torch.nn.Linear``), inference only.

    Few-row products stream the weight through ``bot.generation._matvec``; everything else, and any
    call that needs autograd, is ``F.linear``. The weight may be shared (tied embeddings):
    it is used as it is, never copied.
    """

    def __init__(self, weight: torch.nn.Parameter, bias: torch.nn.Parameter | None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"StreamingLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias shape {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
        self.weight = weight
        self.bias = bias
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self._kernel = (
            kernel_available()
            and weight.dtype == torch.float32
            and weight.device.type == "cpu"
            and weight.is_contiguous()
            and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Cheapest checks first: this runs ~50 times per generated token.
        if (
            self._kernel
            and x.dtype is torch.float32
            and not torch.is_grad_enabled()
            and x.is_contiguous()
            and x.shape[-1] == self.in_features
            and x.is_cpu
            and torch.get_num_threads() == 1
        ):
            rows = x.numel() // self.in_features
            if 0 < rows <= MAX_ROWS:
                out = x.new_empty((*x.shape[:-1], self.out_features))
                _matvec.matvec(
                    x.data_ptr(), self.weight.data_ptr(), 0 if self.bias is None else self.bias.data_ptr(),
                    out.data_ptr(), rows, self.in_features, self.out_features,
                )
                return out
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self._kernel}"


def swap_modules(model: torch.nn.Module, replace: Callable[[torch.nn.Module], torch.nn.Module | None]) -> int:
    """Put ``replace(child)`` in place of every submodule it returns a module for; how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                swapped += 1
    return swapped


def stream_linear_layers(model: torch.nn.Module) -> int:
    """Replace the model's linear layers by ``StreamingLinear``; returns how many.

    ``torch.nn.Linear`` keeps its weight (tied weights stay tied); GPT-2's ``Conv1D``
    ([in, out] weight) gets its weight transposed once, in place of the old one. Does
    nothing when the kernel cannot run here, so the model stays exactly as loaded.
    """
    if not kernel_available():
        return 0
    from transformers.pytorch_utils import Conv1D

    def streaming(child: torch.nn.Module) -> StreamingLinear | None:
        if type(child) is torch.nn.Linear:
            return StreamingLinear(child.weight, child.bias)
        if isinstance(child, Conv1D):
            weight = torch.nn.Parameter(child.weight.detach().t().contiguous(), requires_grad=False)
            return StreamingLinear(weight, child.bias)
        return None

    replaced = swap_modules(model, streaming)
    log.debug("%d linear layers stream through bot.generation._matvec", replaced)
    return replaced
