"""Builds the running bot from settings, in one place, with lifetimes in `async with`."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from bot.answers import Answers
from bot.commands import AdminActions, Commands
from bot.comparison import AutoComparisons
from bot.feedback import EmojiTable
from bot.forgetting import Copies
from bot.generation import Engine, Generator, ModelLoadError, SamplingParams
from bot.implicit import ImplicitSignals
from bot.limits import RateLimiter
from bot.loop import Loop, apply_retention
from bot.metrics import Metrics
from bot.service import BotService
from bot.settings import DataUnavailable, Settings
from bot.training import registry_from
from bot.votes import Votes
from bot.web import WebServer
from storage.database import Database, DatabaseUnavailable, unusable_database
from storage.identity import PersonKeys
from storage.redact import Redactor
from storage.registry import BASE_VERSION, ModelRegistry, RegistryError
from storage.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    repository: Repository
    generator: Engine  # bot.generation.Generator, or the vLLM client (THUMBTUNE_ENGINE)
    service: BotService
    loop: Loop
    web: WebServer | None = None  # dashboard, /healthz and /metrics (THUMBTUNE_DASHBOARD_PORT)


def sampling_from(settings: Settings) -> SamplingParams:
    return SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        candidates=settings.candidates,
    )


def generator_from(settings: Settings, *, source: str, version: int) -> Engine:
    """The engine of THUMBTUNE_ENGINE, serving ``version`` (read from ``source``) once started."""
    if settings.engine == "vllm":
        from bot.generation.vllm import VllmEngine  # only where chosen

        key = settings.engine_api_key
        return VllmEngine(
            urls=settings.engine_url,
            source=source,
            version=version,
            base_model=settings.model,
            api_key=key.get_secret_value() if key is not None else None,
            probe_s=settings.engine_probe_s,
            queue_size=settings.queue_size,
            request_timeout_s=settings.request_timeout_s,
            keep_previous=settings.challenger_share > 0,
        )
    return Generator(
        source=source,
        version=version,
        device=settings.device,
        threads=settings.torch_threads,
        queue_size=settings.queue_size,
        batch_window_s=settings.batch_window_ms / 1000.0,
        max_batch_rows=settings.max_batch_rows,
        request_timeout_s=settings.request_timeout_s,
        keep_previous=settings.challenger_share > 0,
    )


def person_keys_from(settings: Settings) -> PersonKeys:
    """The person keys; a secret file that cannot be made or read raises :class:`DataUnavailable`."""
    secret = settings.person_secret.get_secret_value() if settings.person_secret else None
    try:
        return PersonKeys.from_data_dir(settings.data_dir, secret)
    except OSError as exc:
        where = exc.filename or settings.data_dir
        raise DataUnavailable(
            f"THUMBTUNE_DATA_DIR: cannot write the person secret in {settings.data_dir} "
            f"({exc.strerror or exc}: {where}); or set THUMBTUNE_PERSON_SECRET"
        ) from exc
    except ValueError as exc:  # a key file without a usable secret
        raise DataUnavailable(f"THUMBTUNE_DATA_DIR: {exc}") from exc


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The database of the settings; one that cannot be used raises :class:`DataUnavailable`."""
    try:
        database = await Database.open(settings.database)
    except DatabaseUnavailable as exc:
        raise DataUnavailable(f"{settings.db_setting}: {exc}") from exc
    async with database:
        yield database


@contextmanager
def _writes_at_start(settings: Settings) -> Iterator[None]:
    """The first writes after opening (a full disk shows here): an unusable file is DataUnavailable."""
    try:
        yield
    except sqlite3.Error as exc:
        unusable = unusable_database(settings.db_path, exc)
        if unusable is None:
            raise
        raise DataUnavailable(f"{settings.db_setting}: {unusable}") from exc


def compose_service(
    settings: Settings,
    *,
    repository: Repository,
    generator: Engine,
    persons: PersonKeys,
    registry: ModelRegistry,
    metrics: Metrics,
    admin_actions: AdminActions | None,
) -> BotService:
    """The service's parts, each given everything it needs, composed in one place."""
    commands = Commands(
        repository=repository,
        persons=persons,
        admins=settings.admins,
        charts_dir=settings.data_dir / "charts",
        admin_actions=admin_actions,
        copies=Copies(settings.artifacts_uri, registry, Redactor.from_kinds(settings.redact)),
    )
    implicit = (
        ImplicitSignals(repository=repository, persons=persons, window_s=settings.implicit_window_s)
        if settings.implicit
        else None
    )
    answers = Answers(
        repository=repository,
        generator=generator,
        persons=persons,
        sampling=sampling_from(settings),
        commands=commands,
        metrics=metrics,
        max_prompt_chars=settings.max_prompt_chars,
        rate_limiter=RateLimiter(per_minute=settings.prompts_per_minute, burst=settings.prompt_burst),
        allowed_channels=settings.allowed_channels,
        compare=settings.compare == "on",
        auto_compare=AutoComparisons(settings.compare_share) if settings.compare == "auto" else None,
        challenger_share=settings.challenger_share,
        best_of=settings.best_of,
        implicit=implicit,
    )
    votes = Votes(
        repository=repository,
        persons=persons,
        emoji=EmojiTable(settings.emoji_rewards),
        metrics=metrics,
        flag_emoji=settings.flag_emoji,
        daily_vote_cap=settings.daily_vote_cap,
        max_correction_chars=settings.max_prompt_chars,
    )
    return BotService(answers=answers, votes=votes, commands=commands, implicit=implicit)


def make_data_dir(settings: Settings) -> None:
    """Create THUMBTUNE_DATA_DIR; when it cannot be, raise :class:`DataUnavailable` saying why."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataUnavailable(
            f"THUMBTUNE_DATA_DIR: cannot create the folder {settings.data_dir} ({exc.strerror or exc})"
        ) from exc


def warn_if_open_to_others(settings: Settings) -> None:
    """A data folder made by hand or by an older version may be readable by other accounts:
    say so once the bot runs on it (its modes are the operator's to change, not ours)."""
    mode = settings.data_dir.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "THUMBTUNE_DATA_DIR %s can be read by other accounts (mode %o): chmod 700 it", settings.data_dir, mode
        )


async def start_generator(settings: Settings, registry: ModelRegistry) -> Engine:
    """Serve the registry's current version, else the base model.

    A current version that no longer loads (a damaged folder) is logged and the base
    model serves instead, so the bot still starts; the base failing is fatal.
    """
    info = registry.current()
    if info is not None:
        generator = generator_from(settings, source=str(registry.local_copy(info.version)), version=info.version)
        try:
            await generator.start()
            return generator
        except ModelLoadError as exc:
            log.error("cannot serve version %s (%s); serving the base model instead", info.version, exc)
    generator = generator_from(settings, source=settings.model, version=BASE_VERSION)
    await generator.start()
    return generator


async def _hold_parent(generator: Engine, registry: ModelRegistry, settings: Settings, parent: int) -> None:
    """Champion vs challenger after a restart: load the served version's parent as the previous one."""
    try:
        source = settings.model if parent == BASE_VERSION else str(registry.local_copy(parent))
        await generator.hold_previous(source, parent)
    except (ModelLoadError, RegistryError, OSError) as exc:
        log.warning("champion vs challenger: cannot load the previous version %s: %s", parent, exc)


@asynccontextmanager
async def open_runtime(settings: Settings, *, loop: bool = True) -> AsyncIterator[Runtime]:
    """Database, person keys, the loaded model, the service and (unless ``loop=False``) the
    retraining loop; closed in reverse order.

    A data folder or database that cannot be used raises :class:`DataUnavailable` before
    the model loads."""
    make_data_dir(settings)
    persons = person_keys_from(settings)
    async with open_database(settings) as database:
        warn_if_open_to_others(settings)
        repository = Repository(database)
        with _writes_at_start(settings):
            await apply_retention(settings, repository)
        registry = registry_from(settings)
        generator = await start_generator(settings, registry)
        try:
            version = generator.version
            parent = registry.get(version).parent if version != BASE_VERSION else None
            with _writes_at_start(settings):
                await repository.record_model_version(version, source=generator.source, parent=parent)
            metrics = Metrics()
            retraining = Loop(
                settings=settings, repository=repository, generator=generator, registry=registry, metrics=metrics
            )
            service = compose_service(
                settings,
                repository=repository,
                generator=generator,
                persons=persons,
                registry=registry,
                metrics=metrics,
                admin_actions=retraining,
            )
            if settings.challenger_share > 0 and parent is not None:
                await _hold_parent(generator, registry, settings, parent)
            metrics.watch(generator)
            runtime = Runtime(settings, database, repository, generator, service, retraining)
            if loop:
                await retraining.start()
            try:
                if settings.dashboard_port:
                    runtime.web = WebServer.from_settings(
                        settings,
                        database=database,
                        repository=repository,
                        registry=registry,
                        metrics=service.metrics,
                        generator=generator,
                    )
                    await runtime.web.start()
                yield runtime
            finally:
                if runtime.web is not None:
                    await runtime.web.stop()
                await retraining.stop()
        finally:
            await generator.close()
