"""The CPU decoding kernel (bot/generation/_matvec.c) behind kernels.Linear, against F.linear."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bot.generation import gpt2, kernels, load_model
from bot.generation.kernels import MAX_ROWS, Linear
from storage.dialogue import render_prompt

needs_kernel = pytest.mark.skipif(not kernels.available(), reason="the kernel is not built or no AVX2/FMA here")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def kernel_rows(monkeypatch) -> list[int]:
    """The number of rows of every product that reaches the C kernel, as it happens."""
    calls: list[int] = []
    real = kernels._matvec.matvec

    def counting(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, y: np.ndarray) -> None:
        calls.append(x.size // w.shape[1])
        real(x, w, b, y)

    monkeypatch.setattr(kernels._matvec, "matvec", counting)
    return calls


def test_the_extension_is_built_wherever_it_can_be():
    # A build that silently failed would quietly bring back the slow path: where a C
    # compiler and an AVX2/FMA CPU are present (CI, the development machine), insist.
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("flags")), []))
    if not shutil.which(compiler) or not {"avx2", "fma"} <= flags:
        pytest.skip("no C compiler or no AVX2/FMA here: torch's own kernels are used")
    assert kernels._matvec is not None, f"bot.generation._matvec was not built although {compiler} is installed"
    assert kernels.available()


@needs_kernel
@pytest.mark.parametrize("rows", range(1, MAX_ROWS + 1))
@pytest.mark.parametrize("k", [1, 7, 16, 37, 64, 768])
@pytest.mark.parametrize("with_bias", [True, False])
def test_few_row_products_match_the_plain_fallback(
    one_thread, kernel_rows: list[int], rows: int, k: int, with_bias: bool
):
    torch.manual_seed(rows * 1000 + k)
    n = 53
    weight = torch.randn(n, k)
    bias = torch.randn(n) if with_bias else None
    x = torch.randn(rows, 1, k)  # [batch, sequence, hidden], as in a decoding step
    with torch.inference_mode():
        got = Linear(weight, bias)(x)
    assert kernel_rows == [rows]  # the kernel's path, not the fallback
    want = F.linear(x, weight, bias)
    assert got.shape == want.shape == (rows, 1, n)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * k**0.5)


@needs_kernel
def test_strided_or_misshapen_inputs_never_reach_the_kernel(one_thread, kernel_rows: list[int]):
    weight, bias = torch.randn(40, 24), torch.randn(40)
    layer = Linear(weight, bias)
    x = torch.randn(2, 48)[:, ::2]  # not contiguous
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), F.linear(x, weight, bias))
        with pytest.raises(RuntimeError):  # 2 x 12 has as many numbers as 1 x 24: torch refuses it
            layer(torch.randn(2, 12))
    # A weight not laid out [out, in] in memory (GPT-2's Conv1D as loaded) is never streamed.
    transposed = Linear(torch.randn(24, 40).t(), bias)
    assert not transposed.streams
    with torch.inference_mode():
        x = torch.randn(1, 24)
        torch.testing.assert_close(transposed(x), F.linear(x, transposed.weight, bias))
    assert kernel_rows == []


@needs_kernel
def test_the_kernel_is_used_only_where_it_wins(one_thread, kernel_rows: list[int]):
    layer = Linear(torch.randn(8, 16), None)
    with torch.inference_mode():
        layer(torch.randn(1, 16))
        layer(torch.randn(MAX_ROWS + 1, 16))  # a prompt or a big batch: torch's GEMM
    assert kernel_rows == [1]
    layer(torch.randn(1, 16))  # autograd on: torch
    torch.set_num_threads(2)
    with torch.inference_mode():
        layer(torch.randn(1, 16))  # more threads: torch's kernels use them all
    assert kernel_rows == [1]


def test_gradients_still_flow_through_torch():
    weight = torch.nn.Parameter(torch.randn(5, 3))
    Linear(weight, None)(torch.randn(1, 3)).sum().backward()
    assert weight.grad is not None and weight.grad.shape == (5, 3)


def test_bad_shapes_are_refused_before_anything_reaches_c():
    with pytest.raises(ValueError, match="2-D"):
        Linear(torch.randn(4), None)
    with pytest.raises(ValueError, match="bias shape"):
        Linear(torch.randn(4, 3), torch.randn(3))
    # Not float32: the product works, through torch.
    layer = Linear(torch.randn(4, 3, dtype=torch.float64), None)
    assert not layer.streams
    with torch.inference_mode():
        assert layer(torch.randn(1, 3, dtype=torch.float64)).dtype == torch.float64


@needs_kernel
def test_the_c_function_checks_what_it_is_given():
    # Called directly with the wrong things, the kernel raises instead of reading or
    # writing memory it was not meant to.
    matvec = kernels._matvec.matvec
    w, x, y = np.ones((5, 3), np.float32), np.ones((2, 3), np.float32), np.zeros((2, 5), np.float32)
    matvec(x, w, None, y)
    assert (y == 3).all()
    matvec(x, w, np.full(5, 0.5, np.float32), y)
    assert (y == 3.5).all()
    with pytest.raises(TypeError, match="float32"):
        matvec(x.astype(np.float64), w, None, y)
    with pytest.raises(TypeError, match="C-contiguous"):
        matvec(np.ones((2, 6), np.float32)[:, ::2], w, None, y)
    readonly = np.zeros((2, 5), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        matvec(x, w, None, readonly)
    with pytest.raises(TypeError):
        matvec(b"not numbers", w, None, y)
    with pytest.raises(TypeError):
        matvec(12345, w, None, y)  # an address is not a buffer
    with pytest.raises(ValueError, match=r"\[\.\.\., k\]"):
        matvec(np.ones((2, 4), np.float32), w, None, y)
    with pytest.raises(ValueError, match=r"\[\.\.\., k\]"):
        matvec(x, w, None, np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match="leading shape"):
        matvec(x, w, None, np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="b must be"):
        matvec(x, w, np.ones(4, np.float32), y)
    with pytest.raises(ValueError, match="2-D"):
        matvec(x, np.ones(15, np.float32), None, y)
    square = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        matvec(x[:1], square, None, x[:1])


@needs_kernel
def test_the_served_gpt2_streams_its_weights_in_place(one_thread, kernel_rows: list[int], tiny_model_dir: Path):
    loaded = load_model(tiny_model_dir, version=0, device="cpu")
    model = loaded.model
    forward = gpt2.Gpt2Forward(model, capacity=16)
    products = ("qkv", "attn_out", "fc", "mlp_out")
    linears = [forward.head] + [getattr(block, name) for block in forward.blocks for name in products]
    assert len(linears) == 9 and all(linear.streams for linear in linears)  # 2 layers x 4 + the head
    assert forward.head.weight is model.get_input_embeddings().weight  # tied, not copied
    assert forward.blocks[0].qkv.weight.data_ptr() == model.transformer.h[0].attn.c_attn.weight.data_ptr()
    ids = loaded.tokenizer(render_prompt("what should I eat tonight"), return_tensors="pt")["input_ids"]
    assert ids.shape[1] > MAX_ROWS
    with torch.inference_mode():
        forward(ids, torch.arange(ids.shape[1]).unsqueeze(0), None)  # the prompt: torch's GEMM ...
        assert kernel_rows == [1]  # ... but for the head, which sees the last position only
        forward(ids[:, -1:], torch.tensor([[ids.shape[1]]]), None)  # one new token: the kernel
    assert kernel_rows == [1] * 10
