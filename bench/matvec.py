"""`python -m bench.matvec [--quick]`: the CPU kernel against torch on GPT-2 small's layer weights.

One thread. The 48 weight matrices of GPT-2 small's 12 layers (`[out, in]`, 340 MB, far
larger than the caches), multiplied by 1, 2, 4 and 8 rows through ``kernels.Linear``
(``bot.generation._matvec`` up to ``MAX_ROWS`` rows) and through ``F.linear``; each row count is
timed in alternation with a ``sum()`` over 512 MB, the single-thread read bandwidth.
Reports milliseconds per pass and, for the kernel, GB/s of weights read.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import best_of, emit, quick_args, read_bandwidth_bytes_per_s
from bot.generation import kernels
from bot.generation.kernels import MAX_ROWS, Linear

SHAPES = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]  # [out, in]: qkv, proj, fc, mlp proj
LAYERS = 12


def main() -> None:
    args = quick_args(__doc__, "fewer rounds (< 30 s)")
    torch.manual_seed(0)
    layers = [[Linear(torch.randn(out, inn), torch.randn(out)) for out, inn in SHAPES] for _ in range(LAYERS)]
    weight_bytes = sum(layer.weight.numel() * 4 for block in layers for layer in block)
    buffer = torch.ones(512 * 1024 * 1024 // 4)
    rounds = 2 if args.quick else 5
    result: dict[str, Any] = {
        "kernel_available": kernels.available(),
        "max_rows": MAX_ROWS,
        "weight_bytes": weight_bytes,
        "threads": 1,
        "rounds": rounds,
    }
    bandwidths = []
    with torch.inference_mode():
        for rows in (1, 2, 4, 8):
            inputs = [torch.randn(rows, inn) for _, inn in SHAPES]

            def streaming(inputs: list[torch.Tensor] = inputs) -> None:
                for block in layers:
                    for layer, x in zip(block, inputs, strict=True):
                        layer(x)

            def plain(inputs: list[torch.Tensor] = inputs) -> None:
                for block in layers:
                    for layer, x in zip(block, inputs, strict=True):
                        F.linear(x, layer.weight, layer.bias)

            ours, theirs = [], []
            for _ in range(rounds):
                ours.append(best_of(2, streaming))
                theirs.append(best_of(2, plain))
                bandwidths.append(read_bandwidth_bytes_per_s(buffer))
            result[f"streaming_ms_{rows}"] = round(statistics.median(ours) * 1e3, 2)
            result[f"torch_ms_{rows}"] = round(statistics.median(theirs) * 1e3, 2)
            result[f"streaming_gb_per_s_{rows}"] = round(weight_bytes / statistics.median(ours) / 1e9, 1)
    result["sum_read_gb_per_s"] = round(statistics.median(bandwidths) / 1e9, 1)
    result["streaming_fraction_of_sum_1"] = round(result["streaming_gb_per_s_1"] / result["sum_read_gb_per_s"], 3)
    emit(result)


if __name__ == "__main__":
    main()
