"""The CPU decoding kernel and the one seam where it replaces an op: ``Linear``.

Each generated token of one conversation multiplies a single row of activations by every
weight matrix of the model, so decoding at batch 1 is bound by how fast the weights
stream from memory. On a CPU torch's kernels read GPT-2's layer weights well below the
speed a plain ``sum()`` reads memory; the small C kernel in ``bot/generation/_matvec.c``
(AVX2 + FMA) comes close to it (``python -m bench.matvec`` measures both).

``Linear(weight, bias)(x)`` is ``F.linear(x, weight, bias)``: the model code
(``bot.generation.gpt2``) calls it for every product with a weight and never sees the
kernel. It takes the kernel for products of up to ``MAX_ROWS`` rows, float32, contiguous,
on the CPU, without autograd, on one torch thread; everything else (prompts, larger
batches, training, more threads, a GPU) is ``F.linear``, the plain fallback, as is every
call on a machine where the extension was not built (no C compiler) or the CPU lacks
AVX2/FMA. The kernel gets numpy views of the tensors (the buffer protocol) and checks
their format, shapes and contiguity itself: a wrong call raises, it never reads stray
memory. Its results differ from ``F.linear``'s only by float rounding (a different
summation order); tests/test_kernels.py compares the two.

It is not a ``torch.library`` custom op: a call through torch's dispatcher costs more than
a Python call, and a GPT-2 small token makes 49 of these products; what a token costs
outside the kernel is ``decode_ms_per_token_outside_kernel`` in ``python -m bench.generation``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _compiled() -> ModuleType | None:
    try:
        return importlib.import_module("bot.generation._matvec")
    except ImportError:  # installed without a C compiler, or not built for this platform
        return None


# The C module, or None; Any: the extension carries no type information (tests and
# bench.generation replace its function to watch or skip the kernel).
_matvec: Any = _compiled()

#: Up to this many rows the kernel beats torch on one thread; more rows' activations no
#: longer fit in L1 beside the weight stream (measured by ``python -m bench.matvec``).
MAX_ROWS = 4


def available() -> bool:
    """True when ``bot.generation._matvec`` was built and this CPU runs it."""
    return _matvec is not None and bool(_matvec.available())


def _streamable(tensor: torch.Tensor) -> bool:
    return tensor.dtype == torch.float32 and tensor.is_cpu and tensor.is_contiguous() and tensor.numel() > 0


class Linear:
    """``y = x @ weight.T + bias`` (weight [out, in], as ``torch.nn.Linear``), for decoding.

    The weight is used as it is, never copied (a tied embedding stays shared). Whether it
    can be streamed (float32, contiguous, on the CPU, the kernel here) is settled once;
    whether a call can is checked at every call. A weight in another layout still works,
    through ``F.linear``: GPT-2's ``Conv1D`` weights as loaded are ``weight.t()`` views.
    """

    __slots__ = ("_bias_array", "_kernel", "_weight_array", "bias", "in_features", "out_features", "weight")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        if weight.dim() != 2:
            raise ValueError(f"Linear needs a 2-D weight, got shape {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias shape {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
        self.weight = weight
        self.bias = bias
        self.out_features, self.in_features = weight.shape
        self._kernel: ModuleType | None = None
        self._weight_array: np.ndarray | None = None
        self._bias_array: np.ndarray | None = None
        if available() and _streamable(weight) and (bias is None or _streamable(bias)):
            self._kernel = _matvec
            # Views, made once: the kernel reads the tensors' own memory.
            self._weight_array = weight.detach().numpy()
            self._bias_array = None if bias is None else bias.detach().numpy()

    @property
    def streams(self) -> bool:
        """Whether few-row products with this weight can go through the kernel."""
        return self._kernel is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self._kernel
        # Cheapest checks first: this runs ~50 times per generated token.
        if (
            kernel is not None
            and x.dtype is torch.float32
            and not torch.is_grad_enabled()
            and not x.requires_grad
            and x.is_contiguous()
            and x.shape[-1] == self.in_features
            and x.is_cpu
            and torch.get_num_threads() == 1
            and 0 < x.numel() // self.in_features <= MAX_ROWS
        ):
            out = x.new_empty((*x.shape[:-1], self.out_features))
            kernel.matvec(x.numpy(), self._weight_array, self._bias_array, out.numpy())
            return out
        return F.linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, streams={self.streams})"
