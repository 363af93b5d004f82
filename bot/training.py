"""One training run, from the bot's side: snapshot, launch, record.

The bot is the only writer of its database. A run is recorded in ``training_runs``
when it starts; the dataset it trains on is built here and written with a manifest to
the artifact store (``THUMBTUNE_ARTIFACTS``, :mod:`trainer.snapshot`); the trainer
runs as a subprocess (``python -m trainer run --snapshot URI``, or through
``THUMBTUNE_TRAIN_LAUNCHER``, e.g. ``accelerate launch``), reads only that snapshot and
the parent model, writes the new version into the registry and its result beside the
snapshot. The run is then recorded from the result (published, rejected, skipped or
failed, with the reason) and only then does a published version become current: a
trainer that wrote no result serves nothing.

Where the trainer runs is the backend's business (bot.training_backends: a subprocess
here, or a Ray job). A trainer that hangs is stopped at ``THUMBTUNE_TRAIN_TIMEOUT_S``;
one still running when the bot stops is stopped too; in both cases the run is recorded
as failed. A run left ``running`` by a bot that died is settled at the next start: a Ray
job still going is waited for again, then the run is recorded from its result if the
trainer wrote one, else as failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import fsspec

import trainer.snapshot as snapshot
from bot.settings import DataUnavailable, Settings
from bot.snapshots import prepare
from bot.training_backends import GONE, RAY_INSTALL_HINT, Backend, BackendUnavailable, backend_for
from storage.registry import PUBLISHED, ModelRegistry
from storage.repository import Repository
from trainer.config import DataConfig, JobConfig, TrainConfig, to_arguments
from trainer.requirements import missing_extra
from trainer.snapshot import RunResult, SnapshotError

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the bot stopped during the run and the trainer wrote no result"


@dataclass(frozen=True)
class TrainingOutcome:
    status: str  # published, rejected, skipped, failed, busy
    reason: str | None = None
    version: int | None = None  # the version the run produced, if any
    serving: int | None = None  # the version served after the run (set by bot.loop)
    run: int | None = None  # the training_runs id
    metrics: dict[str, Any] = field(default_factory=dict)  # the trainer's, when it wrote a result
    tracking: str | None = None  # where its training curves went (THUMBTUNE_REPORT_TO)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trainer_configs(settings: Settings) -> tuple[DataConfig, TrainConfig]:
    """How a run's dataset is built and how it trains, from the bot's settings (the gate keeps its defaults)."""
    data = DataConfig(
        min_examples=settings.train_min_examples,
        gamma=settings.gamma,
        held_out_fraction=settings.held_out_fraction,
        all_history=settings.train_history == "all",
        implicit=settings.implicit,
        redact=settings.redact,
    )
    train = TrainConfig(
        learning_rate=settings.train_learning_rate,
        epochs=settings.train_epochs,
        batch_size=settings.train_batch_size,
        lora=settings.train_lora,
        seed=settings.train_seed,
        device=settings.device,
        threads=settings.torch_threads,
        report_to=settings.report_to,
    )
    return data, train


def trainer_launcher(settings: Settings) -> list[str]:
    """What runs ``-m trainer run ...``: ``THUMBTUNE_TRAIN_LAUNCHER`` (e.g. ``accelerate
    launch``) when set; else this Python, or on Ray the cluster's ``python``."""
    if settings.train_launcher:
        return shlex.split(settings.train_launcher)
    return ["python"] if settings.train_backend == "ray" else [sys.executable]


def trainer_command(
    settings: Settings, snapshot_uri: str, launcher: Sequence[str] | None = None, *, train: TrainConfig | None = None
) -> list[str]:
    """The command line of one run on the snapshot at ``snapshot_uri``, training as ``train``
    says (default: as the settings say).

    Paths are absolute: the trainer may run in another working folder (a launcher).
    """
    train = train if train is not None else trainer_configs(settings)[1]
    job = JobConfig(
        snapshot=snapshot_uri,
        registry=settings.registry_uri,
        keep_versions=settings.keep_versions,
        log_level=settings.log_level,
    )
    launcher = trainer_launcher(settings) if launcher is None else list(launcher)
    return [*launcher, "-m", "trainer", "run", *to_arguments(job, train)]


def training_unavailable(settings: Settings) -> str | None:
    """Why the trainer cannot run; None when it can here, or when it runs elsewhere (a Ray
    cluster, or THUMBTUNE_TRAIN_LAUNCHER with another interpreter, maybe on another host)."""
    if settings.train_backend == "ray":
        if importlib.util.find_spec("ray") is None:
            return f"THUMBTUNE_TRAIN_BACKEND=ray needs the ray extra, which is not installed here: {RAY_INSTALL_HINT}"
        return None
    return None if settings.train_launcher else missing_extra("training")


def registry_from(settings: Settings) -> ModelRegistry:
    """The model registry of the settings; a remote one's versions are cached in the data folder."""
    return ModelRegistry(
        settings.registry_uri, keep=settings.keep_versions, cache=settings.data_dir / "cache" / "registry"
    )


def check_artifacts(settings: Settings) -> None:
    """Make sure the artifact store can be written; :class:`DataUnavailable` naming
    ``THUMBTUNE_ARTIFACTS`` (or the data folder it defaults to) when it cannot."""
    uri = settings.artifacts_uri
    try:
        fs, root = fsspec.core.url_to_fs(uri)
        fs.makedirs(root, exist_ok=True)
        probe = f"{root.rstrip('/')}/.write-probe"
        with fs.open(probe, "wb") as handle:
            handle.write(b"ok")
        fs.rm(probe)
    except (OSError, ValueError, ImportError) as exc:
        raise DataUnavailable(
            f"{settings.artifacts_setting}: cannot write the artifact store {uri} ({_why(exc)})"
        ) from exc


class TrainingRuns:
    """Starts, watches and records training runs for one bot (one run at a time is the caller's rule)."""

    def __init__(
        self,
        *,
        settings: Settings,
        repository: Repository,
        registry: ModelRegistry,
        launcher: Sequence[str] | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.registry = registry
        self.launcher = list(launcher) if launcher is not None else trainer_launcher(settings)
        self.backend = backend if backend is not None else backend_for(settings)

    async def run(self, *, extra: Sequence[str] = (), relay: bool = True) -> TrainingOutcome:
        """One run: record it, snapshot its data, run the trainer, record how it ended.

        ``extra``: more trainer options (``thumbtune train --now -- ...``). ``relay``: the
        trainer's log lines go to the ``thumbtune.trainer`` logger; otherwise all its
        output goes to this process's stderr (a person at a terminal).
        """
        parent = await asyncio.to_thread(self.registry.current_version)
        run_id = await self.repository.start_training_run(parent_version=parent)
        try:
            return await self._run(run_id, parent, extra=extra, relay=relay)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(run_id, "failed", "killed: the bot stopped during the run"))
            raise
        except Exception as exc:  # the bot keeps serving; the run says why
            log.exception("training run %d failed", run_id)
            return await self._finish(run_id, "failed", f"{type(exc).__name__}: {exc}"[:500])

    async def _run(self, run_id: int, parent: int, *, extra: Sequence[str], relay: bool) -> TrainingOutcome:
        data, train = trainer_configs(self.settings)  # once per run
        prepared = await prepare(self.repository, data, run=run_id, parent=parent, base_model=self.settings.model)
        dataset = prepared.dataset
        counts = {
            "examples": len(dataset.train),
            "desirable": dataset.desirable,
            "undesirable": dataset.undesirable,
            "held_out": len(dataset.held_out),
        }
        if prepared.not_ready is not None:
            log.info("training skipped: %s", prepared.not_ready)
            return await self._finish(run_id, "skipped", prepared.not_ready, counts=counts)
        uri = snapshot.run_uri(self.settings.artifacts_uri, run_id)
        try:
            size = await asyncio.to_thread(snapshot.write, uri, prepared.manifest, dataset)
        except OSError as exc:
            reason = f"cannot write the snapshot to {self.settings.artifacts_setting} ({_why(exc)})"
            return await self._finish(run_id, "failed", reason, counts=counts)
        log.info(
            "training run %d on version %d: %s (snapshot %d bytes)",
            run_id,
            parent,
            dataset.counts(),
            size,
            extra={"run": run_id, "version": parent},
        )

        rejections = await self._rejections_in_a_row(run_id, parent)
        if rejections:
            # Each run rejected in a row on this parent makes this run's step smaller.
            train = train.after_rejections(rejections)
            log.info(
                "training run %d follows %d rejected run(s) on version %d: learning rate %.3g, beta %.3g",
                run_id,
                rejections,
                parent,
                train.learning_rate,
                train.beta,
                extra={"run": run_id, "version": parent},
            )
        started = time.monotonic()
        command = [*trainer_command(self.settings, uri, self.launcher, train=train), *extra]
        try:
            ended = await self.backend.run(command, run_id=run_id, relay=relay, timeout_s=self.settings.train_timeout_s)
        except BackendUnavailable as exc:
            log.error("training run %d could not start: %s", run_id, exc)
            return await self._finish(run_id, "failed", str(exc), counts=counts)
        return await self._record(run_id, ended, started=started, counts=counts)

    async def _rejections_in_a_row(self, run_id: int, parent: int) -> int:
        """Runs on ``parent`` rejected by the gate since it went live, before run ``run_id``
        (skipped and failed runs neither count nor break the streak)."""
        rejections = 0
        for earlier in await self.repository.training_runs(limit=50):
            if earlier.run_id >= run_id or earlier.status in ("skipped", "failed", "running"):
                continue
            if earlier.status != "rejected" or earlier.parent_version != parent:
                break
            rejections += 1
        return rejections

    async def _read_result(self, run_id: int) -> tuple[RunResult | None, str | None]:
        """The result run ``run_id``'s trainer wrote (None if none), and why it could not be read."""
        try:
            return await asyncio.to_thread(
                snapshot.read_result, snapshot.run_uri(self.settings.artifacts_uri, run_id)
            ), None
        except (SnapshotError, OSError) as exc:
            return None, str(exc)

    async def _record(
        self,
        run_id: int,
        ended: str | None,
        *,
        started: float,
        counts: Mapping[str, int] | None = None,
        read: tuple[RunResult | None, str | None] | None = None,
    ) -> TrainingOutcome:
        """Record how run ``run_id`` ended, from the result its trainer wrote (``read``: already read)."""
        result, problem = read if read is not None else await self._read_result(run_id)
        if problem is not None:
            ended = f"{ended or 'ended'}; its result could not be read ({problem})"
        outcome = _outcome(result, ended)
        log.log(
            logging.ERROR if outcome.status == "failed" else logging.INFO,
            "training run %d %s after %.0f s%s",
            run_id,
            outcome.status,
            time.monotonic() - started,
            f": {outcome.reason}" if outcome.reason else "",
            extra={"run": run_id, "version": outcome.version},
        )
        finished = await self._finish(
            run_id, outcome.status, outcome.reason, version=outcome.version, tracking=outcome.tracking, counts=counts
        )
        if outcome.status == PUBLISHED and outcome.version is not None:
            # Recorded first, then served: the pointer moves last, once, whatever happens next.
            await asyncio.to_thread(self.registry.make_current, outcome.version)
        return replace(finished, metrics=outcome.metrics)

    async def interrupted(self) -> list[int]:
        """Runs a previous bot left ``running``, oldest first (see :meth:`settle`)."""
        return await self.repository.running_training_runs()

    async def settle(self, run_id: int) -> TrainingOutcome:
        """Record a run a previous bot left ``running``: a job still going on the backend (Ray)
        is waited for again; then the run is recorded from the result its trainer wrote,
        else as failed. The job is never started a second time."""
        started = time.monotonic()
        try:
            ended = await self.backend.reattach(run_id, timeout_s=self.settings.train_timeout_s)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(run_id, "failed", "killed: the bot stopped during the run"))
            raise
        except BackendUnavailable as exc:
            log.warning("training run %d: cannot ask the backend about it (%s)", run_id, exc)
            ended = GONE
        if ended != GONE:
            return await self._record(run_id, ended, started=started)
        read = await self._read_result(run_id)  # no job to wait for: its result if written, else interrupted
        if read[0] is None:
            log.warning("training run %d: %s", run_id, INTERRUPTED)
            return await self._finish(run_id, "failed", INTERRUPTED)
        return await self._record(run_id, None, started=started, read=read)

    async def _finish(
        self,
        run_id: int,
        status: str,
        reason: str | None,
        *,
        version: int | None = None,
        tracking: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> TrainingOutcome:
        """Record how run ``run_id`` ended; ``counts``: its examples, desirable, undesirable, held_out."""
        await self.repository.finish_training_run(
            run_id, status=status, reason=reason, new_version=version, tracking=tracking, **(counts or {})
        )
        return TrainingOutcome(status, reason, version, run=run_id, tracking=tracking)


def _outcome(result: RunResult | None, ended: str | None) -> TrainingOutcome:
    """How the run ended: the trainer's result (it stands even if the process then hung or
    crashed), else a failure saying how the process ended."""
    if result is not None:
        return TrainingOutcome(
            result.status, result.reason, result.version, metrics=result.metrics, tracking=result.tracking
        )
    return TrainingOutcome("failed", f"the trainer {ended or 'exited with code 0'} without writing a result")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"
