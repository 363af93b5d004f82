"""Closing the loop inside `thumbtune run`: scheduled retraining, the registry watcher, hot reload.

An APScheduler ``AsyncIOScheduler`` fires the training job on an interval or a cron
schedule. Each firing skips (and records why) when too few new votes arrived since the
current version; otherwise it runs one training run (bot.training: a snapshot of the
data, the trainer as a subprocess or a Ray job, the run recorded from its result, and a
version that passed the eval gate made current). The watcher sees the registry's pointer
change (also when another host or `thumbtune rollback` changed it) and swaps the
generator to it between batches.

Several bot processes on one PostgreSQL database: the schedule fires in each, but only
the process that leads training (:meth:`storage.database.Database.try_lead`, a lock held
for as long as that process's connection lives) trains, records skips and settles runs
a dead leader left; the others follow the registry within THUMBTUNE_REGISTRY_POLL_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.agreement import agreement_table
from bot.changes import summary
from bot.generation import Engine, ModelLoadError
from bot.metrics import Metrics
from bot.settings import Settings
from bot.training import TrainingOutcome, TrainingRuns, check_artifacts, training_unavailable
from storage.records import DamagedRecord
from storage.registry import BASE_VERSION, ModelRegistry, RegistryError, format_versions
from storage.repository import Repository

log = logging.getLogger(__name__)

TRAIN_JOB = "train"
WATCH_JOB = "watch-registry"
RETENTION_JOB = "retention"
TRAINING_LEAD = "training"  # the name of the lead one process holds (Database.try_lead)
NOT_LEADING = "another bot process sharing the database leads training"


async def apply_retention(settings: Settings, repository: Repository) -> int:
    """Blank texts older than THUMBTUNE_RETENTION_DAYS (when set); the number of prompts purged."""
    if not settings.retention_days:
        return 0
    purged = await repository.purge_texts_before(time.time() - settings.retention_days * 86_400)
    if purged:
        log.info("retention: purged the texts of %d prompts older than %d days", purged, settings.retention_days)
    return purged


Announce = Callable[[str], Awaitable[None]]


class Loop:
    """Scheduled retraining and hot reload for one running bot; also its admin actions."""

    def __init__(
        self,
        *,
        settings: Settings,
        repository: Repository,
        generator: Engine,
        registry: ModelRegistry,
        launcher: list[str] | None = None,
        announce: Announce | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.repository = repository
        self.generator = generator
        self.registry = registry
        self.runs = TrainingRuns(settings=settings, repository=repository, registry=registry, launcher=launcher)
        self.unavailable = training_unavailable(settings) if launcher is None else None
        self.announce = announce
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._training = asyncio.Lock()
        self._swapping = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._run_task: asyncio.Task[Any] | None = None  # the training run going now, stopped with the bot
        self.runs_finished = 0  # a counter tests and `simulate` can wait on (wait_for_run)
        self._run_counted = asyncio.Condition()
        self.leading = False  # whether this process leads training (see lead())

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        trigger = self._trigger()
        if trigger is not None and not self.unavailable:
            check_artifacts(self.settings)  # a store that cannot be written stops start-up, not the first run
        await self.lead()  # settles what the last leader (this bot's last start) left running
        if trigger is not None and self.unavailable:
            log.warning("scheduled retraining is off: %s", self.unavailable)
        elif trigger is not None:
            self.scheduler.add_job(
                self.scheduled_run,
                trigger,
                id=TRAIN_JOB,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=await self._first_run_time(trigger),
            )
        if self.settings.registry_poll_s > 0:
            self.scheduler.add_job(
                self.check_registry,
                IntervalTrigger(seconds=self.settings.registry_poll_s),
                id=WATCH_JOB,
                max_instances=1,
                coalesce=True,
            )
        if self.settings.retention_days:
            self.scheduler.add_job(
                apply_retention,
                IntervalTrigger(days=1),
                args=(self.settings, self.repository),
                id=RETENTION_JOB,
                max_instances=1,
                coalesce=True,
            )
        self.scheduler.start()
        job = self.scheduler.get_job(TRAIN_JOB)
        if job is not None:
            log.info("next scheduled training run: %s", job.next_run_time)

    async def stop(self) -> None:
        """Stop the schedule; a training run going now is stopped and recorded as failed."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        running = [self._run_task] if self._run_task is not None and not self._run_task.done() else []
        for task in [*self._background, *running]:
            task.cancel()
        await asyncio.gather(*self._background, *running, return_exceptions=True)

    async def lead(self) -> bool:
        """Whether this process leads training, taking the lead when no running process
        holds it; on taking it, runs the last leader left 'running' are settled."""
        if self.leading:
            return True
        if not await self.repository.database.try_lead(TRAINING_LEAD):
            return False
        self.leading = True
        for run_id in await self.runs.interrupted():  # left running by a leader that stopped
            self._in_background(self._settle(run_id))
        return True

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle(self, run_id: int) -> TrainingOutcome:
        """Record a run the last start left running (waiting for its Ray job if it is still going)."""
        async with self._training:  # no new run meanwhile
            try:
                outcome = await self.runs.settle(run_id)
                await self.check_registry()
            finally:
                await self._count_run()
        return outcome

    def _trigger(self) -> CronTrigger | IntervalTrigger | None:
        if self.settings.train_cron:
            return CronTrigger.from_crontab(self.settings.train_cron, timezone=timezone.utc)
        if self.settings.train_every_minutes > 0:
            return IntervalTrigger(minutes=self.settings.train_every_minutes, timezone=timezone.utc)
        return None

    async def _first_run_time(self, trigger: CronTrigger | IntervalTrigger) -> datetime:
        """A restart does not reset the clock: the next run follows the last recorded one."""
        now = datetime.now(timezone.utc)
        runs = await self.repository.training_runs(limit=1)
        last = datetime.fromtimestamp(runs[0].started_at, timezone.utc) if runs else now
        if isinstance(trigger, IntervalTrigger):
            due = last + timedelta(minutes=self.settings.train_every_minutes)
        else:
            due = trigger.get_next_fire_time(None, last) or now
        return max(due, now)

    # --- the scheduled job ----------------------------------------------------------
    async def scheduled_run(self) -> TrainingOutcome:
        """One firing: skip with a recorded reason when too few votes are new, else train;
        nothing (not even a skip) in a process that does not lead training."""
        current = self.generator.version
        if not await self.lead():
            log.info("scheduled training: %s; this one follows the registry", NOT_LEADING)
            return TrainingOutcome("busy", NOT_LEADING, serving=current)
        new_votes = await self.repository.count_votes_since(current)
        if new_votes < self.settings.train_min_new_votes:
            reason = (
                f"{new_votes} new vote(s) since version {current} went live; "
                f"{self.settings.train_min_new_votes} needed (THUMBTUNE_TRAIN_MIN_NEW_VOTES)"
            )
            await self._record_skip(current, reason)
            log.info("scheduled training skipped: %s", reason)
            await self._count_run()
            return TrainingOutcome("skipped", reason, serving=current)
        return await self.run_training()

    async def _count_run(self) -> None:
        async with self._run_counted:
            self.runs_finished += 1
            self._run_counted.notify_all()

    async def wait_for_run(self, *, after: int) -> int:
        """Wait until more than ``after`` runs (or skips) have finished; their count."""
        async with self._run_counted:
            await self._run_counted.wait_for(lambda: self.runs_finished > after)
            return self.runs_finished

    async def _record_skip(self, parent: int, reason: str) -> None:
        run_id = await self.repository.start_training_run(parent_version=parent)
        await self.repository.finish_training_run(run_id, status="skipped", reason=reason)

    async def run_training(self) -> TrainingOutcome:
        """One training run (never two at once), then reload what it published."""
        if self.unavailable:
            return TrainingOutcome("failed", self.unavailable, serving=self.generator.version)
        if self._training.locked():
            return TrainingOutcome("busy", "a training run is already going", serving=self.generator.version)
        if not await self.lead():
            return TrainingOutcome("busy", NOT_LEADING, serving=self.generator.version)
        async with self._training:
            started = time.monotonic()
            try:
                self._run_task = asyncio.current_task()
                outcome = await self.runs.run()
                serving = await self.check_registry()
            finally:
                self._run_task = None
                await self._count_run()  # counted once the new version (if any) is live
            self.metrics.training_runs.labels(outcome.status).inc()
            self.metrics.training_seconds.observe(time.monotonic() - started)
            return replace(outcome, serving=serving)

    # --- hot reload -----------------------------------------------------------------
    async def check_registry(self) -> int:
        """Swap to the registry's current version if it is not the one being served."""
        async with self._swapping:
            wanted = await asyncio.to_thread(self.registry.current_version)
            if wanted == self.generator.version:
                return wanted
            try:
                if wanted == BASE_VERSION:
                    source, parent = self.settings.model, None
                else:
                    info = await asyncio.to_thread(self.registry.get, wanted)
                    folder = await asyncio.to_thread(self.registry.local_copy, wanted)  # downloaded once if remote
                    source, parent = str(folder), info.parent
                await self.generator.swap(source, wanted)
            except (ModelLoadError, RegistryError) as exc:
                log.error("could not switch to version %s, still serving %s: %s", wanted, self.generator.version, exc)
                return self.generator.version
            await self.repository.record_model_version(wanted, source=source, parent=parent)
            log.info("now serving model version %s", wanted, extra={"version": wanted})
            await self._announce(wanted)
            return wanted

    async def _announce(self, version: int) -> None:
        if self.announce is None:
            return
        text = f"Now serving model version {version}."
        if version != BASE_VERSION:
            info = self.registry.get(version)
            metrics = ", ".join(
                f"{name} {value:.3g}"
                for name, value in sorted(info.metrics.items())
                if isinstance(value, (int, float)) and name in ("perplexity", "preference_accuracy", "distinct_2")
            )
            trained = info.counts.get("train_examples")
            text += f" Trained from version {info.parent} on {trained} examples" if trained else ""
            text += f" ({metrics})." if metrics else "."
            try:
                changes = await asyncio.to_thread(self.registry.changes, version)
            except DamagedRecord as exc:
                log.warning("announcing version %s without what changed: %s", version, exc)
                changes = None
            if changes is not None:
                text += "\n" + summary(changes)
        try:
            await self.announce(text)
        except Exception:  # an announcement is a courtesy; never let it break the reload
            log.exception("could not announce version %s", version)

    # --- admin actions (bot.commands.AdminActions) ----------------------------------
    async def retrain(self) -> str:
        if self.unavailable:
            return f"I can't train on this machine: {self.unavailable}."
        if self._training.locked():
            return "A training run is already going; I'll switch when it passes the gate."
        if not await self.lead():
            return "Another bot process sharing this database leads training: it trains on its schedule."
        self._in_background(self.run_training())
        return "Training started. I'll switch to the new version if it passes the eval gate."

    async def models(self) -> str:
        table = await asyncio.to_thread(format_versions, self.registry)
        text = f"base model (version 0): {self.settings.model}\n{table}\nserving version {self.generator.version}"
        if self.settings.implicit:
            text += "\n" + await agreement_table(self.repository)
        return text

    async def rollback(self, version: int | None) -> str:
        try:
            target = await asyncio.to_thread(self.registry.rollback, version)
        except RegistryError as exc:
            return f"Rollback refused: {exc}"
        serving = await self.check_registry()
        return (
            f"Rolled back: now serving version {serving}."
            if serving == target
            else (f"Version {target} is current in the registry, but loading it failed; still serving {serving}.")
        )
