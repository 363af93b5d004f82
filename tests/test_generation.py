"""The generator with the real tiny model: batching, routing, back-pressure, timeouts, hot swap."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.generation import (
    GenerationTimeout,
    Generator,
    GeneratorBusy,
    ModelLoadError,
    SamplingParams,
    load_model,
)
from bot.generation.loading import hub_reachable
from storage.dialogue import cut_answer, render_prompt

SHORT = SamplingParams(max_new_tokens=8)


def test_template_renders_history_and_the_cut_stops_at_the_next_turn():
    prompt = render_prompt("and tomorrow?", [("what is the weather\nlike", "Sunny.")])
    assert prompt == "User: what is the weather like\nBot: Sunny.\nUser: and tomorrow?\nBot:"
    assert cut_answer(" It will rain.\nUser: thanks\nBot: welcome") == "It will rain."
    assert cut_answer(" Fine thanks. bot: hi") == "Fine thanks. bot: hi"  # only at a line start
    assert cut_answer(" Done.\n\nUser: new dialogue") == "Done."
    assert cut_answer("\nUser: nothing said") == ""


@pytest.fixture
async def generator(tiny_model_dir: Path):
    async with Generator(source=tiny_model_dir, version=0, batch_window_s=0.02, queue_size=16) as running:
        yield running


async def test_several_candidates_come_back_cut_at_the_turn_marker(generator: Generator):
    result = await generator.generate(
        render_prompt("what is the weather like"), SamplingParams(candidates=3, max_new_tokens=32)
    )
    assert len(result.texts) == 3
    assert result.model_version == 0
    assert result.new_tokens > 0
    for text in result.texts:
        assert "User:" not in text and "\n" not in text


async def test_batched_results_go_to_the_right_caller(generator: Generator):
    # Prompts of different lengths and different candidate counts: each caller must get
    # its own prompt's token count and its own number of answers back.
    prompts = [render_prompt("hi " * (i + 1)) for i in range(6)]
    counts = [1, 2, 3, 1, 2, 3]
    results = await asyncio.gather(
        *(
            generator.generate(p, SamplingParams(max_new_tokens=8, candidates=c))
            for p, c in zip(prompts, counts, strict=True)
        )
    )
    tokenizer = load_model(generator.source, version=0, device="cpu").tokenizer
    for prompt, count, result in zip(prompts, counts, results, strict=True):
        assert len(result.texts) == count
        assert result.prompt_tokens == len(tokenizer(prompt)["input_ids"])


async def test_different_sampling_settings_are_answered_separately(generator: Generator):
    results = await asyncio.gather(
        generator.generate(render_prompt("hello"), SamplingParams(max_new_tokens=4, temperature=0.5)),
        generator.generate(render_prompt("hello"), SamplingParams(max_new_tokens=12, temperature=1.2)),
    )
    assert results[0].new_tokens <= 4
    assert all(len(r.texts) == 1 for r in results)


async def test_a_full_queue_answers_busy_at_once(tiny_model_dir: Path):
    async with Generator(source=tiny_model_dir, queue_size=2, max_batch_rows=1, batch_window_s=0) as generator:
        slow = SamplingParams(max_new_tokens=120)
        tasks = [asyncio.create_task(generator.generate(render_prompt("hi"), slow)) for _ in range(8)]
        started = time.monotonic()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        busy = [r for r in done if isinstance(r, GeneratorBusy)]
        answered = [r for r in done if not isinstance(r, BaseException)]
        assert busy, "an overfull queue must refuse"
        assert len(busy) + len(answered) == 8
        assert "try again" in str(busy[0])
        assert time.monotonic() - started < 60


async def test_a_request_that_takes_too_long_times_out(generator: Generator):
    with pytest.raises(GenerationTimeout):
        await generator.generate(render_prompt("hi"), SamplingParams(max_new_tokens=200), timeout_s=0.001)
    # The generator keeps serving afterwards.
    assert (await generator.generate(render_prompt("hi"), SHORT)).texts


async def test_an_overlong_prompt_is_cut_from_the_left(generator: Generator, tiny_model_dir: Path):
    from transformers import AutoConfig

    prompt = render_prompt("tell me something nice " * 200)
    result = await generator.generate(prompt, SHORT)
    context = AutoConfig.from_pretrained(tiny_model_dir).n_positions
    assert result.prompt_tokens == context - SHORT.max_new_tokens


async def test_the_event_loop_keeps_ticking_during_generation(generator: Generator):
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    # Keep the worker busy for a fixed stretch of time rather than a fixed amount of work:
    # the tiny model answers eight prompts in a few tens of milliseconds, too short to tell
    # a ticking loop from a blocked one.
    started = time.monotonic()
    while time.monotonic() - started < 0.5:
        await asyncio.gather(
            *(generator.generate(render_prompt(f"question {i}"), SamplingParams(max_new_tokens=64)) for i in range(8))
        )
    busy_s = time.monotonic() - started
    stop.set()
    await tick
    # Generation happens on the worker thread: the loop keeps ticking all along and is
    # never blocked for long. (Generous bounds: the GIL and a busy shared CI machine add
    # jitter, so a 5 ms tick may average 20 ms; here it averages about 5.5 ms, and a loop
    # blocked by each batch would tick about once a batch.)
    assert len(gaps) >= busy_s / 0.02
    assert max(gaps) < 0.25


async def test_swap_mid_load_tags_old_and_new_answers(generator: Generator, tiny_model_dir: Path):
    before = [asyncio.create_task(generator.generate(render_prompt(f"q{i}"), SHORT)) for i in range(6)]
    await generator.swap(tiny_model_dir, 1)
    after = await asyncio.gather(*(generator.generate(render_prompt(f"r{i}"), SHORT) for i in range(4)))
    old = await asyncio.gather(*before)
    assert all(r.model_version in (0, 1) for r in old)
    assert [r.model_version for r in after] == [1, 1, 1, 1]
    assert generator.version == 1


async def test_a_broken_model_folder_keeps_the_old_model_serving(generator: Generator, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError) as raised:
        await generator.swap(broken, 7)
    assert str(broken) in str(raised.value)
    assert generator.version == 0
    assert (await generator.generate(render_prompt("hi"), SHORT)).model_version == 0


def test_an_unknown_hub_model_offline_names_the_setting():
    with pytest.raises(ModelLoadError) as raised:
        load_model("gpt2-does-not-exist-here", version=0, device="cpu")
    message = str(raised.value)
    assert "THUMBTUNE_MODEL" in message and "make-tiny-model" in message


@pytest.fixture
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP proxy that accepts CONNECT (and goes no further); yields its URL and the
    request lines it received."""
    seen: list[str] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                continue
            with client:
                request = client.recv(4096).decode(errors="replace")
                seen.append(request.splitlines()[0] if request else "")
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    stop.set()
    thread.join()
    server.close()


def test_the_hub_probe_goes_through_the_proxy_the_environment_names(connect_proxy, monkeypatch):
    from huggingface_hub import constants

    proxy, seen = connect_proxy
    # A host that cannot be resolved here: only a proxy can reach it.
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.thumbtune.invalid")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not hub_reachable()  # direct: offline

    monkeypatch.setenv("HTTPS_PROXY", proxy)
    assert hub_reachable()
    assert seen == ["CONNECT hub.thumbtune.invalid:443 HTTP/1.1"]

    monkeypatch.setenv("NO_PROXY", "localhost,.thumbtune.invalid")  # exempt: direct again
    started = time.monotonic()
    assert not hub_reachable()
    assert time.monotonic() - started < 5 and len(seen) == 1


def test_the_served_cpu_model_gives_the_same_logits_and_greedy_text(tiny_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from bot.generation import kernels

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    served = load_model(tiny_model_dir, version=0, device="cpu")
    # The modules are the ones loaded; where the kernel runs, the Conv1D weights are stored
    # as [out, in] (the same values and shapes, other strides) for Gpt2Forward to stream.
    assert [type(m) for m in served.model.modules()] == [type(m) for m in plain.modules()]
    convs = [m for m in served.model.modules() if isinstance(m, Conv1D)]
    assert len(convs) == 8 and all(m.weight.t().is_contiguous() == kernels.available() for m in convs)
    assert served.model.get_output_embeddings().weight is served.model.get_input_embeddings().weight
    encoded = served.tokenizer(render_prompt("what should I eat"), return_tensors="pt")
    with torch.inference_mode():
        assert torch.allclose(plain(**encoded).logits, served.model(**encoded).logits, atol=1e-5)
        greedy = {"do_sample": False, "max_new_tokens": 12, "pad_token_id": served.tokenizer.pad_token_id}
        assert torch.equal(plain.generate(**encoded, **greedy), served.model.generate(**encoded, **greedy))


def test_decoding_a_left_padded_batch_gives_what_generate_gives_each_prompt_alone(tiny_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    from bot.generation import decode

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    served = load_model(tiny_model_dir, version=0, device="cpu")
    tokenizer = served.tokenizer
    prompts = [
        render_prompt("hi"),
        render_prompt("what should I eat tonight, something warm please"),
        render_prompt("do you like cats"),
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert not bool(batch["attention_mask"].all())  # really padded
    greedy = lambda logits: logits.argmax(dim=-1)  # noqa: E731
    got = decode(
        served.model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=15,
        choose=greedy,
        stop_ids={tokenizer.eos_token_id},
    )
    for prompt, ids in zip(prompts, got, strict=True):
        alone = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            want = plain.generate(**alone, do_sample=False, max_new_tokens=15, pad_token_id=tokenizer.eos_token_id)
        want = want[0, alone["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in want:
            want = want[: want.index(tokenizer.eos_token_id) + 1]
        assert ids == want


def test_a_row_leaves_the_batch_at_its_end_and_the_others_go_on_unchanged(tiny_model_dir: Path):
    import torch

    from bot.generation import decode

    served = load_model(tiny_model_dir, version=0, device="cpu")
    tokenizer = served.tokenizer
    prompts = [
        render_prompt("hi"),
        render_prompt("what should I eat tonight, something warm"),
        render_prompt("hello there"),
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    eos = tokenizer.eos_token_id
    steps: list[int] = []

    def greedy_without_end(logits: torch.Tensor) -> torch.Tensor:
        picked = logits.argmax(dim=-1)
        return torch.where(picked == eos, (eos + 1) % logits.shape[-1], picked)

    def first_row_ends_at_once(logits: torch.Tensor) -> torch.Tensor:
        steps.append(logits.shape[0])  # rows still in the batch
        picked = greedy_without_end(logits)
        if len(steps) == 1:
            picked[0] = eos
        return picked

    got = decode(
        served.model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=8,
        choose=first_row_ends_at_once,
        stop_ids={eos},
    )
    assert got[0] == [eos] and len(got[1]) == len(got[2]) == 8
    assert steps == [3] + [2] * 7  # the ended row was dropped from the batch
    for prompt, ids in zip(prompts[1:], got[1:], strict=True):  # the rows that went on: as if alone
        alone = tokenizer(prompt, return_tensors="pt")
        assert decode(
            served.model,
            alone["input_ids"],
            alone["attention_mask"],
            max_new_tokens=8,
            choose=greedy_without_end,
            stop_ids={eos},
        ) == [ids]

    steps.clear()
    got = decode(
        served.model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=40,
        choose=first_row_ends_at_once,
        stop_ids=(),
        done=lambda row, ids: len(ids) >= 3 + row,
    )
    assert [len(ids) for ids in got] == [3, 4, 5] and steps == [3, 3, 3, 2, 1]  # not 40 steps


def test_the_end_of_an_answer_is_where_cut_answer_cuts():
    from storage.dialogue import answer_is_over, cut_answer

    assert not answer_is_over(" I like cats")
    assert not answer_is_over(" I like cats\nand")  # one newline: the answer may go on
    for over in (" I like cats\nUser: and you?", " I like cats\n\nok", "\n bot : hi"):
        assert answer_is_over(over)
        assert cut_answer(over + " more") == cut_answer(over)


def test_the_sampler_draws_from_the_same_distribution_as_transformers_warpers():
    import torch
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from bot.generation import sample_top_k_top_p

    torch.manual_seed(0)
    logits = torch.randn(1, 300) * 3
    warped = TopPLogitsWarper(0.9)(None, TopKLogitsWarper(50)(None, TemperatureLogitsWarper(0.8)(None, logits.clone())))
    expected = torch.softmax(warped, dim=-1)[0]
    picks = sample_top_k_top_p(logits.repeat(20000, 1), 0.8, 0.9)
    observed = torch.bincount(picks, minlength=300).float() / picks.numel()
    assert set(observed.nonzero().flatten().tolist()) <= set(expected.nonzero().flatten().tolist())
    assert 0.5 * (expected - observed).abs().sum().item() < 0.02  # total variation: sampling noise only
