"""The vLLM engine: answers from OpenAI-compatible vLLM servers, new versions loaded into them.

``THUMBTUNE_ENGINE=vllm`` puts :class:`VllmEngine` where the in-process ``Generator``
would be; it has the same interface (bot.generation.engine.Engine) and the same
failures (``GeneratorBusy``, ``GenerationTimeout``), so answers, hot swap, ``/healthz``
and ``/metrics`` work unchanged.

- **Prompts** are rendered as the local engine renders them (storage.dialogue:
  ``User:``/``Bot:`` lines, or the tokenizer's chat template), tokenized here with the
  same left truncation, and sent as token ids to ``/v1/completions`` with the same
  sampling (temperature, top-p, top-k 50), the same stops and ``n`` candidates in one
  request; the answer is cut as the local engine cuts it.
- **Replicas**: every base URL of ``THUMBTUNE_ENGINE_URL`` is one. Each is probed
  every ``THUMBTUNE_ENGINE_PROBE_S`` (``/v1/models``; ``/weight_info`` in dev mode): a
  replica that stops answering is skipped and reported; one that answers again, or that
  lost what it held (a restart), is brought to the current version *before* it gets
  traffic. Requests go to the ready replica with the fewest in flight; a replica that
  fails mid-request is marked down and the request goes to another. With none ready, a
  prompt waits up to its timeout (then gets :class:`EngineUnavailable`, a "busy" kind).
- **Best-of-n**: the ``n`` candidates come from one request; where the version's reward
  head ranks, it scores them here (:class:`Ranker`: vLLM returns no hidden states, so
  the bot keeps the version's weights for that one forward pass).
- **Versions** live inside the servers. A version whose folder keeps a PEFT adapter
  (``adapter/``, trained with LoRA) is loaded with ``POST /v1/load_lora_adapter`` as
  ``thumbtune-vN`` into every replica and new requests name it; the old adapter is
  unloaded once no request in flight uses it. Any other version (GPT-2, whose LoRA vLLM
  does not serve, or LoRA off) replaces the weights: the bot stops sending to the
  replica, waits for its requests there, then ``/pause?mode=wait`` (the server finishes
  what it runs), ``/collective_rpc reload_weights`` from the version's folder,
  ``/update_weight_version``, ``/resume``: every answer is written by one set of weights
  and tagged with it. These endpoints exist only with ``VLLM_SERVER_DEV_MODE=1``: keep
  such a server on a private network. The folder path must be the same on the engine's
  machine (a shared folder, or the same machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from bot.generation.decoding import SamplingParams
from bot.generation.errors import (
    EngineUnavailable,
    GenerationError,
    GenerationTimeout,
    GeneratorBusy,
    ModelLoadError,
)
from bot.generation.loading import hub_reachable
from bot.generation.status import EngineState, ReplicaState
from bot.generation.worker import Generation
from storage.dialogue import BOT, USER, ModelDialogue, stop_token_ids
from storage.registry import BASE_VERSION, adapter_of
from storage.reward import RewardHead, answer_features

log = logging.getLogger(__name__)

ADAPTER_PREFIX = "thumbtune-v"  # a version's adapter is served under this name + its number
WEIGHTS_PREFIX = "thumbtune-"  # the weight version the bot writes after replacing weights
TOP_K = 50  # the local sampler's (bot.generation.decoding.sample_top_k_top_p)
PROBE_TIMEOUT_S = 5.0
ADMIN_TIMEOUT_S = 300.0  # loading weights or an adapter


class ReplicaFailed(Exception):
    """One replica could not take a request (down, restarted, overloaded): try another."""


@dataclass(frozen=True)
class Target:
    """A version as the engine serves it: from an adapter over version 0, or from full weights."""

    version: int
    source: str  # the folder the servers load from (for version 0: THUMBTUNE_MODEL)
    adapter: str | None = None  # the version's PEFT adapter folder, if it keeps one

    @property
    def kind(self) -> str:
        if self.version == BASE_VERSION:
            return "base"
        return "lora" if self.adapter else "full"

    @property
    def adapter_name(self) -> str:
        return f"{ADAPTER_PREFIX}{self.version}"


@dataclass(eq=False)
class Replica:
    url: str
    up: bool = False
    base_name: str | None = None  # the served model's name (--served-model-name)
    max_model_len: int | None = None
    weights: int | None = None  # the version whose full weights it holds (0: the base)
    adapters: set[int] = field(default_factory=set)  # versions whose adapters it holds
    lora: bool | None = None  # whether it takes adapters (None: not tried yet)
    syncing: bool = False  # being brought to a version: no new requests
    in_flight: int = 0
    error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def model_for(self, target: Target) -> str | None:
        """The model name a request for ``target`` gives this replica; None when it cannot serve it."""
        if not self.up or self.base_name is None:
            return None
        if target.kind == "lora" and target.version in self.adapters and self.weights == BASE_VERSION:
            return target.adapter_name
        if self.weights == target.version:
            return self.base_name
        return None


@dataclass(frozen=True)
class Ranker:
    """Best-of-n beside the engine: the version's reward head over hidden states computed here.

    vLLM returns no hidden states, so the bot keeps the version's weights on its own CPU
    for one forward pass over the candidates (bench.engines measures what that costs)."""

    version: int
    model: Any
    tokenizer: Any
    reward: RewardHead

    @classmethod
    def load(cls, source: str, version: int) -> Ranker | None:
        """The version's ranker; None without a reward head that ranks (version 0, little evidence)."""
        reward = RewardHead.load(source) if Path(source).is_dir() else None
        if reward is None or not reward.ranks:
            return None
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True).eval()
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except Exception as exc:  # OSError, ValueError, a SafetensorError for damaged weights, ...
            raise ModelLoadError(f"version {version}: its reward model needs its weights ({exc})"[:300]) from exc
        return cls(version, model, tokenizer, reward)

    def rank(self, prompt: str, texts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """The candidates best first, with their scores (runs on a worker thread)."""
        features = answer_features(self.model, self.tokenizer, [(prompt, text) for text in texts])
        scored = sorted(zip(self.reward.score(features).tolist(), texts, strict=True), key=lambda pair: -pair[0])
        return tuple(text for _, text in scored), tuple(round(score, 4) for score, _ in scored)


class VllmEngine:
    """Generation by vLLM servers (one or several replicas), with versions loaded into them."""

    def __init__(  # noqa: PLR0913  one keyword per engine setting, passed by bot.app
        self,
        *,
        urls: list[str],
        source: str | Path,
        version: int = BASE_VERSION,
        base_model: str,
        api_key: str | None = None,
        probe_s: float = 2.0,
        queue_size: int = 64,
        request_timeout_s: float = 120.0,
        keep_previous: bool = False,
    ) -> None:
        if not urls:
            raise ValueError("VllmEngine needs at least one server URL")
        self.replicas = [Replica(url.rstrip("/")) for url in urls]
        self._initial = (str(source), version)
        self._base_model = base_model  # version 0: what the servers were started with
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.probe_s = probe_s
        self._queue_size = queue_size
        self.request_timeout_s = request_timeout_s
        self.keep_previous = keep_previous
        self.on_batch: Callable[[int], None] | None = None  # told each request's candidates (metrics)
        # Told each call to a replica: (url, seconds, None or why it failed), for metrics.
        self.on_call: Callable[[str, float, str | None], None] | None = None
        self._current: Target | None = None
        self._previous: Target | None = None
        self._session: aiohttp.ClientSession | None = None
        self._dialogue: ModelDialogue | None = None
        self._stops: list[int] = []
        self._max_positions = 1024
        self._waiting = 0  # requests taken and not answered (the local engine's queue)
        self._in_flight: Counter[int] = Counter()  # requests in flight per version
        self._changed = asyncio.Event()  # set (and replaced) when a replica or the version changes
        self._swap_lock = asyncio.Lock()
        self._probing: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._rotation = 0
        self._ranker: Ranker | None = None  # the current version's, where its reward head ranks

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Read the tokenizer here, probe every replica and bring the live ones to the version.

        Servers that are down do not stop the start: prompts wait for them. A version that
        every live replica refuses raises :class:`ModelLoadError` (the caller falls back)."""
        if self._session is not None:
            return
        source, version = self._initial
        tokenizer, stops, positions = await asyncio.to_thread(_text_side, source)
        self._dialogue, self._stops, self._max_positions = ModelDialogue(tokenizer), sorted(stops), positions
        self._session = aiohttp.ClientSession(headers=self._headers)
        self._current = self._target(source, version)
        self._ranker = await asyncio.to_thread(Ranker.load, source, version)
        try:
            results = await asyncio.gather(*(self._probe(replica) for replica in self.replicas))
        except BaseException:
            await self.close()
            raise
        refused = [replica for replica, ok in zip(self.replicas, results, strict=True) if replica.up and not ok]
        if refused and len(refused) == sum(replica.up for replica in self.replicas):
            reasons = "; ".join(f"{replica.url}: {replica.error}" for replica in refused)
            await self.close()
            raise ModelLoadError(f"the vLLM servers cannot serve version {version}: {reasons}")
        if not any(replica.up for replica in self.replicas):
            log.warning(
                "THUMBTUNE_ENGINE_URL: no vLLM server answers (%s); prompts wait for one",
                "; ".join(f"{replica.url}: {replica.error}" for replica in self.replicas),
            )
        self._probing = asyncio.create_task(self._probe_forever())

    async def close(self) -> None:
        tasks = [task for task in [self._probing, *self._background] if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._probing = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> VllmEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what the bot reads ---------------------------------------------------------
    @property
    def version(self) -> int:
        assert self._current is not None, "VllmEngine.start() first"
        return self._current.version

    @property
    def source(self) -> str:
        assert self._current is not None, "VllmEngine.start() first"
        return self._current.source

    @property
    def previous_version(self) -> int | None:
        """The previous version while the servers can serve it beside the current one
        (adapters over the same base weights); never after a full-weight swap."""
        previous, current = self._previous, self._current
        if previous is None or current is None or "full" in (previous.kind, current.kind):
            return None
        return previous.version

    @property
    def ranks_candidates(self) -> bool:
        """Whether the current version's reward head ranks candidates (computed beside the engine)."""
        ranker, current = self._ranker, self._current
        return ranker is not None and current is not None and ranker.version == current.version

    def queued(self) -> int:
        return self._waiting

    def state(self) -> EngineState:
        current = self._current
        replicas = tuple(
            ReplicaState(
                url=replica.url,
                up=replica.up,
                ready=self._ready(replica, current),
                version=self._serving(replica),
                error=replica.error,
            )
            for replica in self.replicas
        )
        return EngineState(
            kind="vllm",
            reachable=any(replica.ready for replica in replicas),
            version=current.version if current else BASE_VERSION,
            replicas=replicas,
        )

    def _serving(self, replica: Replica) -> int | None:
        if not replica.up:
            return None
        current = self._current
        if current is not None and replica.model_for(current) is not None:
            return current.version
        return replica.weights

    # --- asking ---------------------------------------------------------------------
    async def generate(
        self, prompt: str, params: SamplingParams, *, timeout_s: float | None = None, version: int | None = None
    ) -> Generation:
        """``params.candidates`` answers to a stored dialogue ``prompt``, from one request.

        ``version``: the previous version (champion vs challenger) where the servers hold
        it, else the current one; the result names the version that wrote it."""
        if self._session is None or self._dialogue is None:
            raise GenerationError("The generator is not running.")
        if self._waiting >= self._queue_size:
            raise GeneratorBusy()
        loop = asyncio.get_running_loop()
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        deadline = loop.time() + timeout
        ids = self._encode(prompt, params)
        self._waiting += 1
        try:
            while True:
                target = self._target_for(version)
                picked = self._pick(target)
                if picked is None:
                    changed = self._changed
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        if any(replica.up for replica in self.replicas):
                            raise GenerationTimeout(timeout)
                        raise EngineUnavailable()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(changed.wait(), remaining)
                    continue
                replica, model = picked
                try:
                    generation = await self._complete(
                        replica, model, target, ids, params, timeout=deadline - loop.time()
                    )
                except ReplicaFailed as exc:
                    log.warning("vLLM replica %s failed a request (%s); trying another", replica.url, exc)
                    self._lost(replica, str(exc))
                    continue
                ranker = self._ranker
                if params.rank and len(generation.texts) > 1 and ranker and ranker.version == target.version:
                    texts, scores = await asyncio.to_thread(ranker.rank, prompt, generation.texts)
                    generation = replace(generation, texts=texts, scores=scores)
                return generation
        finally:
            self._waiting -= 1

    def _encode(self, prompt: str, params: SamplingParams) -> list[int]:
        """The prompt's token ids as the local engine makes them (left-truncated to fit)."""
        assert self._dialogue is not None
        dialogue = self._dialogue
        limits = [self._max_positions, *(r.max_model_len for r in self.replicas if r.max_model_len)]
        limit = max(1, min(limits) - params.max_new_tokens)
        encoded = dialogue.tokenizer(
            dialogue.prompt(prompt), truncation=True, max_length=limit, add_special_tokens=dialogue.add_special_tokens
        )
        return list(encoded["input_ids"])

    def _target_for(self, version: int | None) -> Target:
        assert self._current is not None
        previous = self._previous
        if version is not None and previous is not None and version == self.previous_version:
            return previous
        return self._current

    def _ready(self, replica: Replica, target: Target | None) -> bool:
        return target is not None and not replica.syncing and replica.model_for(target) is not None

    def _pick(self, target: Target) -> tuple[Replica, str] | None:
        """The ready replica with the fewest requests in flight (in turn among equals)."""
        ready = [replica for replica in self.replicas if self._ready(replica, target)]
        if not ready:
            return None
        self._rotation += 1
        order = ready[self._rotation % len(ready) :] + ready[: self._rotation % len(ready)]
        replica = min(order, key=lambda r: r.in_flight)
        model = replica.model_for(target)
        assert model is not None
        return replica, model

    def _completion_request(self, model: str, ids: list[int], params: SamplingParams, *, chat: bool) -> dict[str, Any]:
        """The body of a ``/v1/completions`` request for ``ids`` sampled with ``params``."""
        body: dict[str, Any] = {
            "model": model,
            "prompt": ids,
            "n": params.candidates,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": TOP_K,
            "max_tokens": params.max_new_tokens,
            "stop_token_ids": self._stops,
        }
        if not chat:
            # The next turn ends a GPT-2 answer; _complete cuts it as the local engine does, these only save tokens.
            body["stop"] = [f"\n{USER}", f"\n{BOT}", "\n\n"]
        return body

    async def _complete(
        self, replica: Replica, model: str, target: Target, ids: list[int], params: SamplingParams, *, timeout: float
    ) -> Generation:
        assert self._session is not None and self._dialogue is not None
        body = self._completion_request(model, ids, params, chat=self._dialogue.chat)
        if self.on_batch is not None:
            self.on_batch(params.candidates)
        replica.in_flight += 1
        self._in_flight[target.version] += 1
        started = time.monotonic()
        failure: str | None = None
        try:
            async with self._session.post(
                f"{replica.url}/v1/completions", json=body, timeout=aiohttp.ClientTimeout(total=max(timeout, 0.001))
            ) as response:
                status = response.status
                payload = await response.json(content_type=None)
        except asyncio.TimeoutError:
            failure = "timeout"
            raise GenerationTimeout(self.request_timeout_s) from None
        except (aiohttp.ClientError, ValueError) as exc:
            failure = "unreachable"
            raise ReplicaFailed(type(exc).__name__) from None
        finally:
            replica.in_flight -= 1
            self._in_flight[target.version] -= 1
            self._notify()
            if failure is not None and self.on_call is not None:
                self.on_call(replica.url, time.monotonic() - started, failure)
        if self.on_call is not None:
            self.on_call(replica.url, time.monotonic() - started, None if status == 200 else f"http_{status}")
        if status == 404:  # the adapter is gone: the server restarted between two probes
            replica.adapters.discard(target.version)
            raise ReplicaFailed(f"it no longer holds {model}")
        if status in (401, 403):
            log.error("vLLM replica %s refused the bot's key (THUMBTUNE_ENGINE_API_KEY)", replica.url)
            raise GenerationError("Sorry, my model server refused me; an operator has to look at it.")
        if status >= 500 or status == 429:
            raise ReplicaFailed(f"HTTP {status}")
        if status != 200:
            message = _error_message(payload)
            log.warning("vLLM replica %s refused a prompt: HTTP %s %s", replica.url, status, message)
            raise GenerationError(f"Sorry, my model server refused that prompt ({message[:120]}).")
        choices = sorted(payload.get("choices", []), key=lambda choice: choice.get("index", 0))
        usage = payload.get("usage") or {}
        return Generation(
            texts=tuple(self._dialogue.answer(str(choice.get("text", ""))) for choice in choices),
            model_version=target.version,
            new_tokens=int(usage.get("completion_tokens") or 0),
            prompt_tokens=int(usage.get("prompt_tokens") or len(ids)),
        )

    # --- versions -------------------------------------------------------------------
    def _target(self, source: str | Path, version: int) -> Target:
        if version == BASE_VERSION:
            return Target(BASE_VERSION, self._base_model)
        adapter = adapter_of(source) if Path(source).is_dir() else None
        return Target(version, str(source), str(adapter) if adapter else None)

    async def swap(self, source: str | Path, version: int) -> None:
        """Load ``version`` into every live replica, then send new requests to it.

        An adapter is loaded beside the old one (no pause); full weights replace the old
        ones replica by replica (each drained first). A version no live replica can load
        raises :class:`ModelLoadError`, and the current one keeps serving."""
        async with self._swap_lock:
            assert self._current is not None
            new, old = self._target(source, version), self._current
            started = time.monotonic()
            ranker = await asyncio.to_thread(Ranker.load, str(source), version)
            live = [replica for replica in self.replicas if replica.up]
            loaded = await asyncio.gather(*(self._bring_locked(replica, new) for replica in live))
            if live and not any(loaded):
                reasons = "; ".join(f"{replica.url}: {replica.error}" for replica in live)
                for replica in live:  # weights may have moved under a failed load
                    await self._bring_locked(replica, old)
                raise ModelLoadError(f"no vLLM server could load version {version} ({reasons})")
            self._current, self._ranker = new, ranker
            self._previous = old if self.keep_previous and old.version != new.version else None
            self._notify()
            log.info(
                "vLLM serves version %s (%s) on %d of %d replicas, %.2f s after the swap began",
                version,
                "adapter" if new.kind == "lora" and any(version in r.adapters for r in live) else "weights",
                sum(loaded),
                len(self.replicas),
                time.monotonic() - started,
            )
            if old.kind == "lora" and old.version != new.version and self._previous is None:
                self._in_background(self._unload_when_idle(old))

    async def hold_previous(self, source: str | Path, version: int) -> None:
        """Champion vs challenger after a restart: the parent, where it can be served beside the current one."""
        previous = self._target(source, version)
        for replica in self.replicas:
            if replica.up and previous.kind == "lora":
                await self._bring_locked(replica, previous, adapter_only=True)
        self._previous = previous

    async def _bring_locked(self, replica: Replica, target: Target, *, adapter_only: bool = False) -> bool:
        async with replica.lock:
            return await self._bring(replica, target, adapter_only=adapter_only)

    async def _bring(self, replica: Replica, target: Target, *, adapter_only: bool = False) -> bool:
        """Make ``replica`` hold ``target``; False (with ``replica.error``) when it cannot."""
        if replica.model_for(target) is not None:
            return True
        try:
            if target.kind == "lora" and replica.lora is not False:
                if replica.weights != BASE_VERSION:
                    await self._replace_weights(replica, Target(BASE_VERSION, self._base_model))
                if await self._load_adapter(replica, target):
                    return True
            if adapter_only:
                return False
            await self._replace_weights(replica, target)
            return True
        except ReplicaFailed as exc:
            replica.error = str(exc)
            log.error("vLLM replica %s cannot load version %s: %s", replica.url, target.version, exc)
            return False

    async def _load_adapter(self, replica: Replica, target: Target) -> bool:
        """Load the version's adapter; False when this server takes no adapters (LoRA off, or
        not for this architecture): the version is then served from its full weights."""
        status, payload = await self._admin(
            replica, "/v1/load_lora_adapter", {"lora_name": target.adapter_name, "lora_path": target.adapter}
        )
        message = _error_message(payload)
        if status == 200 or "already been loaded" in message:
            replica.adapters.add(target.version)
            replica.lora = True
            return True
        if "not enabled" in message or "not support" in message or status in (404, 405):
            if replica.lora is None:
                log.info("vLLM replica %s takes no LoRA adapters (%s): full weights instead", replica.url, message)
            replica.lora = False
            return False
        raise ReplicaFailed(f"loading the adapter of version {target.version}: HTTP {status} {message}")

    async def _replace_weights(self, replica: Replica, target: Target) -> None:
        """Replace the replica's weights with ``target``'s full weights, with nothing in flight."""
        if replica.weights == target.version:
            return
        replica.syncing = True
        try:
            while replica.in_flight:  # the bot's own requests there finish first
                await self._wait_changed(1.0)
            status, payload = await self._admin(replica, "/pause?mode=wait", None)
            if status != 200:
                raise ReplicaFailed(
                    f"replacing weights needs VLLM_SERVER_DEV_MODE=1 (/pause: HTTP {status} {_error_message(payload)})"
                )
            try:
                replica.weights = None  # unknown until the load finishes
                status, payload = await self._admin(
                    replica,
                    "/collective_rpc",
                    {"method": "reload_weights", "kwargs": {"weights_path": target.source}},
                )
                if status != 200:
                    raise ReplicaFailed(f"reload_weights: HTTP {status} {_error_message(payload)}")
                await self._admin(
                    replica, "/update_weight_version", {"new_version": f"{WEIGHTS_PREFIX}{target.version}"}
                )
                replica.weights = target.version
            finally:
                await self._admin(replica, "/resume", None)
        finally:
            replica.syncing = False
            self._notify()

    async def _unload_when_idle(self, old: Target) -> None:
        """Unload an adapter no longer served, once no request in flight uses it."""
        while self._in_flight[old.version] > 0:
            await self._wait_changed(1.0)
        current, previous = self._current, self._previous
        if old.version in {t.version for t in (current, previous) if t is not None}:
            return  # rolled back to it meanwhile
        for replica in self.replicas:
            if replica.up and old.version in replica.adapters:
                async with replica.lock:
                    await self._admin(replica, "/v1/unload_lora_adapter", {"lora_name": old.adapter_name}, quiet=True)
                    replica.adapters.discard(old.version)
        log.info("unloaded the adapter of version %s (nothing in flight used it)", old.version)

    async def _admin(
        self, replica: Replica, path: str, body: dict[str, Any] | None, *, quiet: bool = False
    ) -> tuple[int, Any]:
        """One management call; a server that does not answer raises :class:`ReplicaFailed`."""
        assert self._session is not None
        try:
            async with self._session.post(
                f"{replica.url}{path}", json=body, timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if quiet:
                return 0, None
            raise ReplicaFailed(f"{path.split('?')[0]}: {type(exc).__name__}") from None
        try:
            payload: Any = _json(text)
        except ValueError:
            payload = text
        return status, payload

    # --- probing --------------------------------------------------------------------
    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_s)
            results = await asyncio.gather(*(self._probe(replica) for replica in self.replicas), return_exceptions=True)
            for replica, result in zip(self.replicas, results, strict=True):
                if isinstance(result, Exception):  # an answer of a shape we did not expect: log, probe again
                    log.error("probing vLLM replica %s failed: %s: %s", replica.url, type(result).__name__, result)

    async def _probe(self, replica: Replica) -> bool:
        """Is the replica up, and does it hold the current version? Brings it there if not."""
        try:
            async with replica.lock:
                was_up = replica.up
                seen = await self._look(replica)
                if seen is None:
                    return False
                if not was_up:
                    log.info("vLLM replica %s answers (holds weights %s)", replica.url, replica.weights)
                current = self._current
                if current is None or replica.model_for(current) is not None:
                    replica.error = None
                    return True
                log.info(
                    "vLLM replica %s does not hold version %s: loading it before it gets traffic",
                    replica.url,
                    current.version,
                )
                started = time.monotonic()
                replica.syncing = True
                try:
                    ok = await self._bring(replica, current)
                finally:
                    replica.syncing = False
                if ok:
                    replica.error = None
                    log.info(
                        "vLLM replica %s serves version %s (%.2f s)",
                        replica.url,
                        current.version,
                        time.monotonic() - started,
                    )
                return ok
        finally:
            self._notify()

    async def _look(self, replica: Replica) -> bool | None:
        """Read what the replica holds (its served model, adapters, weight version); None when down."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        try:
            async with self._session.get(f"{replica.url}/v1/models", timeout=timeout) as response:
                if response.status != 200:
                    raise ReplicaFailed(f"/v1/models: HTTP {response.status}")
                models = (await response.json(content_type=None)).get("data", [])
            async with self._session.get(f"{replica.url}/weight_info", timeout=timeout) as response:
                weight_version = (await response.json(content_type=None)).get("weight_version") if response.ok else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError, ReplicaFailed) as exc:
            self._lost(replica, str(exc) if isinstance(exc, ReplicaFailed) else type(exc).__name__)
            return None
        base = [model for model in models if not model.get("parent")]
        if not base:
            self._lost(replica, "serves no model")
            return None
        replica.base_name = str(base[0]["id"])
        replica.max_model_len = base[0].get("max_model_len")
        replica.adapters = {
            int(name[len(ADAPTER_PREFIX) :])
            for name in (str(model["id"]) for model in models if model.get("parent"))
            if name.startswith(ADAPTER_PREFIX) and name[len(ADAPTER_PREFIX) :].isdigit()
        }
        # A fresh server holds the weights it started with (version 0); the bot names each it loads.
        text = str(weight_version or "")
        number = text[len(WEIGHTS_PREFIX) :] if text.startswith(WEIGHTS_PREFIX) else ""
        replica.weights = int(number) if number.isdigit() else BASE_VERSION
        replica.up = True
        return True

    def _lost(self, replica: Replica, reason: str) -> None:
        if replica.up:
            log.warning("vLLM replica %s is down (%s): skipped until it answers again", replica.url, reason)
        replica.up = False
        replica.error = reason
        replica.weights = None
        replica.adapters = set()
        self._notify()

    # --- helpers --------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_changed(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _in_background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def _error_message(payload: Any) -> str:
    """vLLM's error text ({"error": {"message": ...}}, or FastAPI's {"detail": ...}), one line."""
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload))
        if isinstance(error, dict):
            error = error.get("message", error)
        return " ".join(str(error).split())[:300]
    return " ".join(str(payload or "").split())[:300]


def _text_side(source: str) -> tuple[Any, set[int], int]:
    """The tokenizer, stop ids and context length of ``source`` (a version folder or the base model)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    def read(local_only: bool) -> tuple[Any, Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        try:
            generation = GenerationConfig.from_pretrained(source, local_files_only=local_only)
        except OSError:
            generation = None
        return tokenizer, config, generation

    try:
        try:
            tokenizer, config, generation = read(True)
        except OSError:
            if Path(source).is_dir() or not hub_reachable():
                raise
            tokenizer, config, generation = read(False)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:240] or type(exc).__name__
        raise ModelLoadError(f"cannot read the tokenizer of {source} (THUMBTUNE_MODEL): {reason}") from exc
    tokenizer.truncation_side = "left"  # an over-long prompt keeps its newest text, as locally
    positions = int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 1024)
    return tokenizer, stop_token_ids(tokenizer, generation), positions
