"""The worker thread that owns the models: a request queue, batches, and hot swap.

Callers on the event loop put requests into a bounded queue and await a future.
The worker takes everything that arrived within a short window, groups requests
whose sampling settings can share a batch, decodes one left-padded batch
per group, and resolves each caller's future with its own texts. A new model is
loaded and warmed up on another thread and switched in between two batches, so no
request is dropped and every answer carries the version that produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bot.generation.decoding import SamplingParams, sample
from bot.generation.errors import GenerationError, GenerationTimeout, GeneratorBusy, ModelLoadError
from bot.generation.loading import LoadedModel, load_model
from bot.generation.status import EngineState
from storage.dialogue import render_prompt

log = logging.getLogger(__name__)

WARMUP_PROMPT = render_prompt("hello")


@dataclass(frozen=True)
class Generation:
    texts: tuple[str, ...]  # one per candidate, cut at the next turn marker
    model_version: int
    new_tokens: int  # tokens generated across the candidates
    prompt_tokens: int  # tokens of the (possibly left-truncated) prompt
    scores: tuple[float, ...] | None = None  # the reward model's, per candidate (best first), if it ranked them


@dataclass(eq=False)
class _Request:
    prompt: str
    params: SamplingParams
    version: int | None  # None: the current version; else the previous one, if loaded
    future: asyncio.Future[Generation]
    loop: asyncio.AbstractEventLoop
    abandoned: bool = False  # the caller gave up (timeout); skip it


class _Signal(enum.Enum):
    """What the queue carries besides requests."""

    STOP = enum.auto()
    WAKE = enum.auto()  # a new model waits to be installed


def _after_free(device: torch.device) -> None:
    # Dropping the last reference frees the weights (reference counting). No gc.collect()
    # here: a full collection holds the GIL long enough to stall the event loop.
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _resolve(future: asyncio.Future[Any], result: object = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Generator:
    """Batched, thread-confined text generation with back-pressure and hot swap."""

    def __init__(  # noqa: PLR0913  one keyword per generator setting, passed by bot.app
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
        self._queue: queue.Queue[_Request | _Signal] = queue.Queue(maxsize=queue_size)
        self.on_batch: Callable[[int], None] | None = None  # told each batch's rows, on the worker thread (metrics)
        self._batch_window_s = batch_window_s
        self._max_batch_rows = max_batch_rows
        self.request_timeout_s = request_timeout_s
        self._loaded: LoadedModel | None = None
        # Champion vs challenger: after a swap the replaced model stays loaded, so requests
        # can still ask for it; without keep_previous it is freed at the swap.
        self.keep_previous = keep_previous
        self._previous: LoadedModel | None = None
        self._pending: tuple[LoadedModel, asyncio.Future[None], asyncio.AbstractEventLoop] | None = None
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
        self._loaded = await asyncio.to_thread(self._load_and_warm_up, self._source, self._initial_version)
        self._worker = threading.Thread(target=self._run, name="thumbtune-generator", daemon=True)
        self._worker.start()

    async def close(self) -> None:
        if self._worker is None:
            return
        await asyncio.to_thread(self._queue.put, _Signal.STOP)
        await asyncio.to_thread(self._worker.join)
        self._worker = None
        for request in self._drain():
            request.loop.call_soon_threadsafe(
                _resolve, request.future, None, GenerationError("The bot is shutting down.")
            )

    async def __aenter__(self) -> Generator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def version(self) -> int:
        assert self._loaded is not None, "Generator.start() first"
        return self._loaded.version

    @property
    def ranks_candidates(self) -> bool:
        """Whether the current version has a reward model to pick the best of several answers."""
        return self._loaded is not None and self._loaded.reward is not None

    @property
    def previous_version(self) -> int | None:
        """The version served before the current one, while it is still loaded."""
        previous = self._previous
        return previous.version if previous is not None else None

    async def hold_previous(self, source: str | Path, version: int) -> None:
        """Load ``source`` as the previous version (e.g. the parent, after a restart)."""
        loaded = await asyncio.to_thread(self._load_and_warm_up, str(source), version)
        self._previous = loaded  # one reference assignment; the worker reads it per batch

    @property
    def source(self) -> str:
        assert self._loaded is not None, "Generator.start() first"
        return self._loaded.source

    def queued(self) -> int:
        return self._queue.qsize()

    def state(self) -> EngineState:
        """In-process: reachable while the worker runs."""
        running = self._worker is not None and self._loaded is not None
        return EngineState(kind="local", reachable=running, version=self._loaded.version if self._loaded else 0)

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
            with contextlib.suppress(queue.Full):  # the worker is busy and checks between batches
                self._queue.put_nowait(_Signal.WAKE)
            await switched

    # --- worker thread --------------------------------------------------------------
    def _load_and_warm_up(self, source: str, version: int) -> LoadedModel:
        started = time.monotonic()
        loaded = load_model(source, version=version, device=self._device)
        try:
            # Two candidates where a reward model ranks them: a head that does not fit fails here, not later.
            ranks = loaded.reward is not None
            warm = sample(loaded, [WARMUP_PROMPT], SamplingParams(max_new_tokens=2), [2 if ranks else 1], [ranks])
        except Exception as exc:  # e.g. NaN weights make sampling fail
            raise ModelLoadError(f"model {source} failed its warm-up sample: {exc}") from exc
        if not warm or warm[0].new_tokens <= 0:
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

    # One wait loop: its exits (stop, wake, a model to install, the window closing) read best together.
    def _collect(self) -> tuple[list[_Request], bool]:  # noqa: C901
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
            if item is _Signal.STOP:
                return batch, True
            if item is _Signal.WAKE:
                if not batch:
                    return batch, False
                continue
            batch.append(item)
            rows += item.params.candidates
        return batch, False

    def _serve(self, batch: list[_Request]) -> None:
        live = [request for request in batch if not request.abandoned and not request.future.done()]
        groups: dict[tuple[int, tuple[float, float, int]], list[_Request]] = {}
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
        if self.on_batch is not None:
            self.on_batch(sum(request.params.candidates for request in chunk))
        try:
            results = sample(
                loaded,
                [r.prompt for r in chunk],
                params,
                [r.params.candidates for r in chunk],
                [r.params.rank for r in chunk],
            )
        except Exception as exc:  # one bad batch must not stop the worker
            log.exception("generation failed for a batch of %d requests", len(chunk))
            error = GenerationError(f"Sorry, generation failed: {type(exc).__name__}.")
            for request in chunk:
                request.loop.call_soon_threadsafe(_resolve, request.future, None, error)
            return
        for request, result in zip(chunk, results, strict=True):
            generation = Generation(
                texts=tuple(result.texts),
                model_version=loaded.version,
                new_tokens=result.new_tokens,
                prompt_tokens=result.prompt_tokens,
                scores=tuple(result.scores) if result.scores is not None else None,
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
