"""The CPU decoding kernel (bot/generation/_matvec.c through bot/generation/kernels.py) against torch's own linear."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from bot.generation import kernels as matvec
from bot.generation.kernels import MAX_ROWS, StreamingLinear, kernel_available, stream_linear_layers

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="bot.generation._matvec not built or no AVX2/FMA here")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_extension_is_built_wherever_it_can_be():
    # A build that silently failed would quietly bring back the slow path: where a C
    # compiler and an AVX2/FMA CPU are present (CI, the development machine), insist.
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("flags")), []))
    if not shutil.which(compiler) or not {"avx2", "fma"} <= flags:
        pytest.skip("no C compiler or no AVX2/FMA here: torch's own kernels are used")
    assert matvec._matvec is not None, f"bot.generation._matvec was not built although {compiler} is installed"
    assert kernel_available()


@needs_kernel
@pytest.mark.parametrize("rows", range(1, MAX_ROWS + 1))
@pytest.mark.parametrize("k", [1, 7, 16, 37, 64, 768])
@pytest.mark.parametrize("with_bias", [True, False])
def test_few_row_products_match_torch(one_thread, rows: int, k: int, with_bias: bool):
    torch.manual_seed(rows * 1000 + k)
    n = 53
    weight = torch.randn(n, k)
    bias = torch.randn(n) if with_bias else None
    layer = StreamingLinear(weight, bias)
    x = torch.randn(rows, 1, k)  # [batch, sequence, hidden], as in a decoding step
    with torch.inference_mode():
        got = layer(x)
    want = F.linear(x, weight, bias)
    assert got.shape == want.shape == (rows, 1, n)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * k**0.5)


@needs_kernel
def test_strided_or_misshapen_inputs_never_reach_the_kernel(one_thread):
    weight, bias = torch.randn(40, 24), torch.randn(40)
    layer = StreamingLinear(weight, bias)
    x = torch.randn(2, 48)[:, ::2]  # not contiguous
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), F.linear(x, weight, bias))
        with pytest.raises(RuntimeError):  # 2 x 12 has as many numbers as 1 x 24: torch refuses it
            layer(torch.randn(2, 12))


@needs_kernel
def test_the_kernel_is_used_only_where_it_wins(one_thread, monkeypatch):
    calls = []
    real = matvec._matvec.matvec
    monkeypatch.setattr(matvec._matvec, "matvec", lambda *a: calls.append(a[4]) or real(*a))
    layer = StreamingLinear(torch.randn(8, 16), None)
    with torch.inference_mode():
        layer(torch.randn(1, 16))
        layer(torch.randn(MAX_ROWS + 1, 16))  # a prompt or a big batch: torch's GEMM
    assert calls == [1]
    layer(torch.randn(1, 16))  # autograd on: torch
    torch.set_num_threads(2)
    with torch.inference_mode():
        layer(torch.randn(1, 16))  # more threads: torch's kernels use them all
    assert calls == [1]


def test_gradients_still_flow_through_torch():
    weight = torch.nn.Parameter(torch.randn(5, 3))
    layer = StreamingLinear(weight, None)
    layer(torch.randn(1, 3)).sum().backward()
    assert weight.grad is not None and weight.grad.shape == (5, 3)


@needs_kernel
def test_gpt2_conv1d_and_tied_linear_layers_are_replaced_without_copying_the_embedding(one_thread):
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(30, 12)
    model = torch.nn.Module()
    model.embed = embedding
    model.conv = Conv1D(20, 12)  # GPT-2's layout: weight [in, out]
    model.head = torch.nn.Linear(12, 30, bias=False)
    model.head.weight = embedding.weight
    x = torch.randn(1, 12)
    with torch.inference_mode():
        before_conv, before_head = model.conv(x), model.head(x)
    assert stream_linear_layers(model) == 2
    assert isinstance(model.conv, StreamingLinear) and isinstance(model.head, StreamingLinear)
    assert model.head.weight is embedding.weight
    with torch.inference_mode():
        torch.testing.assert_close(model.conv(x), before_conv)
        torch.testing.assert_close(model.head(x), before_head)


def test_bad_shapes_are_refused_before_any_pointer_reaches_c():
    with pytest.raises(ValueError, match="2-D"):
        StreamingLinear(torch.randn(4), None)
    with pytest.raises(ValueError, match="bias shape"):
        StreamingLinear(torch.randn(4, 3), torch.randn(3))
    # Not float32: the layer works, through torch.
    layer = StreamingLinear(torch.randn(4, 3, dtype=torch.float64), None)
    with torch.inference_mode():
        assert layer(torch.randn(1, 3, dtype=torch.float64)).dtype == torch.float64
