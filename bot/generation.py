"""The generation engine: one worker thread owns the model and answers in batches.

Callers on the event loop put requests into a bounded queue and await a future.
The worker takes everything that arrived within a short window, groups requests
whose sampling settings can share a batch, decodes one left-padded batch
per group, and resolves each caller's future with its own texts. A new model is
loaded and warmed up on another thread and switched in between two batches, so no
request is dropped and every answer carries the version that produced it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bot import gpt2
from bot.matvec import stream_linear_layers, swap_modules
from storage.dialogue import answer_is_over, cut_answer, render_prompt

log = logging.getLogger(__name__)

WARMUP_PROMPT = render_prompt("hello")


class GenerationError(Exception):
    """Generation could not answer; the message is fit to show a person."""


class GeneratorBusy(GenerationError):
    def __init__(self) -> None:
        super().__init__("I'm busy answering other people right now, try again shortly.")


class GenerationTimeout(GenerationError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"Sorry, that took longer than {seconds:g} s; please try again.")


class ModelLoadError(GenerationError):
    """A model could not be loaded or failed its warm-up sample."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 48
    candidates: int = 1

    def batch_key(self) -> tuple[float, float, int]:
        # Candidates are just more rows; the rest must be equal to share one batch.
        return (self.temperature, self.top_p, self.max_new_tokens)


@dataclass(frozen=True)
class Generation:
    texts: tuple[str, ...]       # one per candidate, cut at the next turn marker
    model_version: int
    new_tokens: int              # tokens generated across the candidates
    prompt_tokens: int           # tokens of the (possibly left-truncated) prompt


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    version: int
    source: str
    device: torch.device
    max_positions: int


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
            if local or not _hub_reachable():
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
    tokenizer.padding_side = "left"      # generation continues from the right edge
    tokenizer.truncation_side = "left"   # an over-long prompt keeps its newest text
    model.to(target)
    model.eval()
    _fuse_tanh_gelu(model)
    if target.type == "cpu":
        stream_linear_layers(model)  # batch-1 decoding at memory speed (bot/matvec.py)
    config = model.config
    max_positions = int(
        getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024)
    )
    return LoadedModel(model, tokenizer, version, source, target, max_positions)


def _fuse_tanh_gelu(model: torch.nn.Module) -> None:
    """GPT-2's activation, written out as seven tensor operations, as torch's one fused op.

    Same formula (tanh approximation), float rounding apart: ~70 fewer operator calls per
    generated token for GPT-2 small, on a CPU thread or as GPU kernel launches.
    """
    from transformers.activations import NewGELUActivation

    swap_modules(model, lambda child: torch.nn.GELU(approximate="tanh") if isinstance(child, NewGELUActivation) else None)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP probe, so an offline machine fails in seconds, not after minutes of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def sample_top_k_top_p(logits: torch.Tensor, temperature: float, top_p: float, top_k: int = 50) -> torch.Tensor:
    """One token id per row: temperature, then top-k, then nucleus (top-p) sampling.

    The distribution of ``generate(do_sample=True)`` with GPT-2's defaults (top_k=50), but
    computed over the k best tokens only: ``generate`` sorts and samples over the whole
    50,257-token vocabulary for every row and step, about 18 % of a batch of 32 on one
    CPU thread (torch profiler).
    """
    values, indices = torch.topk(logits.float() / temperature, min(top_k, logits.shape[-1]))
    probs = torch.softmax(values, dim=-1)  # sorted, highest first
    # Keep the smallest prefix whose probability reaches top_p (always the first token).
    outside = probs.cumsum(dim=-1) - probs >= top_p
    probs = probs.masked_fill(outside, 0.0)
    return indices.gather(-1, torch.multinomial(probs, 1)).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each token's position in its own row of a left-padded batch (padding counts as 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class TransformersForward:
    """``Gpt2Forward``'s interface over any causal LM's own forward and a ``DynamicCache``."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.cache = DynamicCache()

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=self.cache,
            use_cache=True, logits_to_keep=1,
        ).logits[:, -1]

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)


@torch.inference_mode()
def decode(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    eos_token_id: int | None,
    done: Callable[[int, list[int]], bool] | None = None,
) -> list[list[int]]:
    """Continue each row of a left-padded batch by up to ``max_new_tokens`` tokens.

    ``choose`` maps the last logits [rows, vocab] to one id per row. A row ends with an
    end-of-text token (kept) or when ``done(row, its new ids)`` says its answer is complete,
    and leaves the batch (its cached keys and values too); decoding stops when every row
    has ended. Returns each row's new ids, in the order of the input rows.

    This is ``generate``'s loop without what the bot does not use (logits processors,
    stopping-criteria objects, beam bookkeeping), and no tokens after an answer is over.
    GPT-2 models run through ``bot.gpt2.Gpt2Forward``, others through their own forward.
    """
    rows = input_ids.shape[0]
    # One unpadded row needs no mask (the plain causal path).
    mask = None if rows == 1 and bool(attention_mask.all()) else attention_mask
    positions = position_ids(attention_mask)
    if gpt2.supports(model):
        forward = gpt2.Gpt2Forward(model, capacity=input_ids.shape[1] + max_new_tokens)
    else:
        forward = TransformersForward(model)
    logits = forward(input_ids, positions, mask)
    position = positions[:, -1:]
    new: list[list[int]] = [[] for _ in range(rows)]
    live = list(range(rows))  # the original row of each row still in the batch
    for step in range(max_new_tokens):
        picked = choose(logits)
        going = []  # indexes (in the batch) of the rows whose answers go on
        for index, token in enumerate(picked.tolist()):
            row = live[index]
            new[row].append(token)
            if token != eos_token_id and not (done is not None and done(row, new[row])):
                going.append(index)
        if not going or step == max_new_tokens - 1:
            break
        if len(going) < len(live):
            # Finished rows leave the batch: later steps compute only the answers still going.
            keep = torch.tensor(going, device=picked.device)
            forward.keep(keep)
            picked, position = picked[keep], position[keep]
            mask = None if mask is None else mask[keep]
            live = [live[i] for i in going]
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=-1)
        position = position + 1
        logits = forward(picked.unsqueeze(-1), position, mask)
    return new


def sample(loaded: LoadedModel, prompts: Sequence[str], params: SamplingParams, rows_per_prompt: Sequence[int]) -> list[tuple[list[str], int, int]]:
    """One batched decode over ``prompts`` (prompt i repeated rows_per_prompt[i] times).

    Returns, per prompt, (answers, new tokens, prompt tokens). Runs on the worker thread.
    """
    tokenizer = loaded.tokenizer
    rows = [text for text, count in zip(prompts, rows_per_prompt) for _ in range(count)]
    limit = max(1, loaded.max_positions - params.max_new_tokens)
    encoded = tokenizer(rows, return_tensors="pt", padding=True, truncation=True, max_length=limit)
    encoded = {name: tensor.to(loaded.device) for name, tensor in encoded.items()}
    new = decode(
        loaded.model, encoded["input_ids"], encoded["attention_mask"],
        max_new_tokens=params.max_new_tokens,
        choose=lambda logits: sample_top_k_top_p(logits, params.temperature, params.top_p),
        eos_token_id=tokenizer.eos_token_id,
        # Stop a row once its answer is over: the tokens after it would be cut anyway.
        done=lambda _row, ids: answer_is_over(tokenizer.decode(ids, skip_special_tokens=True)),
    )
    prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
    results: list[tuple[list[str], int, int]] = []
    row = 0
    for count in rows_per_prompt:
        chosen = new[row : row + count]
        texts = [cut_answer(text) for text in tokenizer.batch_decode(chosen, skip_special_tokens=True)]
        results.append((texts, sum(len(ids) for ids in chosen), int(prompt_lengths[row])))
        row += count
    return results


@dataclass(eq=False)
class _Request:
    prompt: str
    params: SamplingParams
    version: int | None              # None: the current version; else the previous one, if loaded
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    abandoned: bool = False          # the caller gave up (timeout); skip it
    enqueued_at: float = field(default_factory=time.monotonic)


_STOP = object()
_WAKE = object()


def _after_free(device: torch.device) -> None:
    # Dropping the last reference frees the weights (reference counting). No gc.collect()
    # here: a full collection holds the GIL for ~0.2 s and stalls the event loop.
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _resolve(future: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Generator:
    """Batched, thread-confined text generation with back-pressure and hot swap."""

    def __init__(
        self,
        *,
        source: str | Path,
        version: int = 0,
        device: str = "auto",
        threads: int | None = 1,
        queue_size: int = 64,
        batch_window_s: float = 0.01,
        max_batch_rows: int = 32,
        request_timeout_s: float = 120.0,
        keep_previous: bool = False,
    ) -> None:
        self._source = str(source)
        self._initial_version = version
        self._device = device
        self._threads = threads
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._batch_window_s = batch_window_s
        self._max_batch_rows = max_batch_rows
        self.request_timeout_s = request_timeout_s
        self._loaded: LoadedModel | None = None
        # Champion vs challenger: after a swap the replaced model stays loaded, so requests
        # can still ask for it; without keep_previous it is freed at the swap.
        self.keep_previous = keep_previous
        self._previous: LoadedModel | None = None
        self._pending: tuple[LoadedModel, asyncio.Future, asyncio.AbstractEventLoop] | None = None
        self._pending_lock = threading.Lock()
        self._swap_lock = asyncio.Lock()
        self._carry: deque[_Request] = deque()
        self._worker: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Load the initial model (off the loop) and start the worker thread (once)."""
        if self._worker is not None:
            return
        if self._threads:
            torch.set_num_threads(self._threads)
        self._loaded = await asyncio.to_thread(
            self._load_and_warm_up, self._source, self._initial_version
        )
        self._worker = threading.Thread(target=self._run, name="thumbtune-generator", daemon=True)
        self._worker.start()

    async def close(self) -> None:
        if self._worker is None:
            return
        await asyncio.to_thread(self._queue.put, _STOP)
        await asyncio.to_thread(self._worker.join)
        self._worker = None
        for request in self._drain():
            request.loop.call_soon_threadsafe(
                _resolve, request.future, None, GenerationError("The bot is shutting down.")
            )

    async def __aenter__(self) -> "Generator":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def version(self) -> int:
        assert self._loaded is not None, "Generator.start() first"
        return self._loaded.version

    @property
    def previous_version(self) -> int | None:
        """The version served before the current one, while it is still loaded."""
        previous = self._previous
        return previous.version if previous is not None else None

    async def hold_previous(self, source: str | Path, version: int) -> None:
        """Load ``source`` as the previous version (e.g. the parent, after a restart)."""
        loaded = await asyncio.to_thread(self._load_and_warm_up, str(source), version)
        self._previous = loaded  # one reference assignment; the worker reads it per batch

    def drop_previous(self) -> None:
        """Free the previous version's memory (champion vs challenger is over)."""
        previous, self._previous = self._previous, None
        if previous is not None:
            device = previous.device
            del previous
            _after_free(device)

    @property
    def source(self) -> str:
        assert self._loaded is not None, "Generator.start() first"
        return self._loaded.source

    @property
    def max_positions(self) -> int:
        assert self._loaded is not None, "Generator.start() first"
        return self._loaded.max_positions

    def queued(self) -> int:
        return self._queue.qsize()

    # --- asking ---------------------------------------------------------------------
    async def generate(
        self, prompt: str, params: SamplingParams, *, timeout_s: float | None = None, version: int | None = None
    ) -> Generation:
        """Sample ``params.candidates`` answers to a rendered dialogue prompt.

        ``version``: ask for the previous version (champion vs challenger); when it is not
        loaded (any more) the current one answers. The result names the version that did.

        Raises :class:`GeneratorBusy` at once when the queue is full and
        :class:`GenerationTimeout` when the answer takes longer than the timeout.
        """
        if self._worker is None:
            raise GenerationError("The generator is not running.")
        loop = asyncio.get_running_loop()
        request = _Request(prompt=prompt, params=params, version=version, future=loop.create_future(), loop=loop)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise GeneratorBusy() from None
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except asyncio.TimeoutError:
            request.abandoned = True
            raise GenerationTimeout(timeout) from None
        except asyncio.CancelledError:
            request.abandoned = True
            raise

    async def swap(self, source: str | Path, version: int) -> None:
        """Load ``source`` as ``version`` in the background and switch to it between batches.

        A failed load or warm-up raises :class:`ModelLoadError` and the current model
        keeps serving. Returns once the worker uses the new model.
        """
        async with self._swap_lock:
            loaded = await asyncio.to_thread(self._load_and_warm_up, str(source), version)
            loop = asyncio.get_running_loop()
            switched = loop.create_future()
            with self._pending_lock:
                self._pending = (loaded, switched, loop)
            del loaded
            try:
                self._queue.put_nowait(_WAKE)
            except queue.Full:
                pass  # the worker is busy and checks for a new model between batches
            await switched

    # --- worker thread --------------------------------------------------------------
    def _load_and_warm_up(self, source: str, version: int) -> LoadedModel:
        started = time.monotonic()
        loaded = load_model(source, version=version, device=self._device)
        try:
            warm = sample(loaded, [WARMUP_PROMPT], SamplingParams(max_new_tokens=2), [1])
        except Exception as exc:  # e.g. NaN weights make sampling fail
            raise ModelLoadError(f"model {source} failed its warm-up sample: {exc}") from exc
        if not warm or warm[0][1] <= 0:
            raise ModelLoadError(f"model {source} produced nothing in its warm-up sample")
        log.info("loaded model version %s from %s in %.1f s", version, source, time.monotonic() - started)
        return loaded

    def _install_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        new, switched, loop = pending
        old, self._loaded = self._loaded, new
        if old is not None and self.keep_previous and old.version != new.version:
            old, self._previous = self._previous, old
        loop.call_soon_threadsafe(_resolve, switched, None)
        if old is not None:
            device = old.device
            del old
            _after_free(device)
        log.info("now serving model version %s", new.version)

    def _run(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        while True:
            batch, stop = self._collect()
            self._install_pending()
            if batch:
                self._serve(batch)
            if stop:
                return

    def _collect(self) -> tuple[list[_Request], bool]:
        """Wait for a request, then take what arrives within the batch window."""
        batch: list[_Request] = []
        rows = 0
        while self._carry and rows < self._max_batch_rows:
            request = self._carry.popleft()
            batch.append(request)
            rows += request.params.candidates
        deadline = None
        while rows < self._max_batch_rows:
            if not batch:
                timeout = 0.05
            else:
                deadline = deadline or time.monotonic() + self._batch_window_s
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if batch:
                    break
                if self._pending is not None:
                    return batch, False
                continue
            if item is _STOP:
                return batch, True
            if item is _WAKE:
                if not batch:
                    return batch, False
                continue
            batch.append(item)
            rows += item.params.candidates
        return batch, False

    def _serve(self, batch: list[_Request]) -> None:
        live = [request for request in batch if not request.abandoned and not request.future.done()]
        groups: dict[tuple, list[_Request]] = {}
        models: dict[int, LoadedModel] = {}
        for request in live:
            loaded = self._model_for(request.version)
            models[id(loaded)] = loaded
            groups.setdefault((id(loaded), request.params.batch_key()), []).append(request)
        for (model_id, _), requests in groups.items():
            chunk: list[_Request] = []
            rows = 0
            for request in requests:
                if chunk and rows + request.params.candidates > self._max_batch_rows:
                    # Requests that do not fit wait for the next batch.
                    self._carry.append(request)
                    continue
                chunk.append(request)
                rows += request.params.candidates
            self._sample_chunk(models[model_id], chunk)

    def _model_for(self, version: int | None) -> LoadedModel:
        loaded, previous = self._loaded, self._previous
        assert loaded is not None
        if version is not None and previous is not None and version == previous.version:
            return previous
        return loaded

    def _sample_chunk(self, loaded: LoadedModel, chunk: list[_Request]) -> None:
        params = chunk[0].params
        try:
            results = sample(
                loaded, [r.prompt for r in chunk], params, [r.params.candidates for r in chunk]
            )
        except Exception as exc:  # one bad batch must not stop the worker
            log.exception("generation failed for a batch of %d requests", len(chunk))
            error = GenerationError(f"Sorry, generation failed: {type(exc).__name__}.")
            for request in chunk:
                request.loop.call_soon_threadsafe(_resolve, request.future, None, error)
            return
        for request, (texts, new_tokens, prompt_tokens) in zip(chunk, results):
            generation = Generation(
                texts=tuple(texts),
                model_version=loaded.version,
                new_tokens=new_tokens,
                prompt_tokens=prompt_tokens,
            )
            request.loop.call_soon_threadsafe(_resolve, request.future, generation)

    def _drain(self) -> list[_Request]:
        drained = list(self._carry)
        self._carry.clear()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return drained
            if isinstance(item, _Request):
                drained.append(item)
