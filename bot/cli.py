"""The `thumbtune` command (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import DataUnavailable, Settings, SettingsError, load_settings
from storage import PRIVATE_UMASK
from storage.database import is_database_url
from trainer.progress import enable_download_bars

if TYPE_CHECKING:
    from bot.adapters.base import Adapter
    from bot.training import TrainingOutcome
    from storage.copy import CopyReport

log = logging.getLogger("thumbtune")


def quiet_libraries() -> None:
    # Progress bars and advisory warnings from the ML libraries drown the chat.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    enable_download_bars()  # the first `make run` downloads ~0.5 GB of gpt2: show it, in a terminal


def _setup_logging(level: str, *, log_file: Path | None = None, settings: Settings | None = None) -> Path | None:
    """Log lines to stderr; or, with ``log_file`` (the shell chat owns the terminal), to that
    file (rotated at 10 MB, 3 kept) and only warnings and errors to stderr. The file used, if any.

    With ``settings``: their log format (text or JSON lines) and their secrets masked.
    Routine scheduler lines ("Running job ...") are not INFO for us.
    """
    from bot.logs import MaskSecrets, formatter

    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    handlers: list[logging.Handler] = []
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            to_file = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=10_000_000, backupCount=3, encoding="utf-8"
            )
        except OSError:
            log_file = None  # the data folder is unusable: start-up says so in one line; log to stderr meanwhile
        else:
            to_file.setLevel(level)
            handlers.append(to_file)
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.WARNING if log_file is not None else level)
    handlers.append(to_terminal)
    shape = formatter(settings.log_format if settings is not None else "text")
    secrets = MaskSecrets(settings.secret_values() if settings is not None else ())
    for handler in handlers:
        handler.setFormatter(shape)
        handler.addFilter(secrets)
    logging.basicConfig(level=level, handlers=handlers)
    return log_file


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "adapter", None):
        overrides["adapter"] = args.adapter
    return load_settings(**overrides)


async def _run(settings: Settings) -> int:
    from bot.adapters.base import StartupError, adapter_class
    from bot.app import open_runtime
    from bot.generation import ModelLoadError

    adapter_type = adapter_class(settings.chosen_adapter())
    try:
        adapter_type.check_settings(settings)  # a missing token fails before the model loads
        async with open_runtime(settings) as runtime:
            adapter = adapter_type.from_settings(runtime.service, settings)
            runtime.loop.announce = adapter.announce  # "now serving version N"
            if runtime.web is not None:
                runtime.web.adapter = adapter  # /healthz says whether it is connected
            with _stopped_by_signals(adapter):
                try:
                    await adapter.serve()
                finally:
                    await adapter.stop()
    except StartupError as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModelLoadError as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _stopped_by_signals(adapter: Adapter) -> Iterator[None]:
    """SIGTERM and SIGINT stop the adapter gracefully: no new prompts, the answers in flight
    finish within THUMBTUNE_SHUTDOWN_GRACE_S, the database is closed, and the exit code is 0."""
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def stop(name: str) -> None:
        log.info("%s: stopping gracefully", name)
        task = loop.create_task(adapter.stop())
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signal.Signals(signum).name)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # The shell chat owns the terminal: its log goes to a file, so lines never land in the chat.
    shell = settings.chosen_adapter() == "shell"
    _setup_logging(settings.log_level, log_file=settings.shell_log_path if shell else None, settings=settings)
    quiet_libraries()
    return asyncio.run(_run(settings))


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    _setup_logging("INFO")
    quiet_libraries()
    import torch

    from bot.tinymodel import VARIED, TinyModelSpec, make_tiny_model

    torch.set_num_threads(1)
    spec = dataclasses.replace(VARIED if args.varied else TinyModelSpec(), seed=args.seed, arch=args.arch)
    if args.steps is not None:
        spec = dataclasses.replace(spec, steps=args.steps)
    out = make_tiny_model(Path(args.dir), spec)
    print(f"Tiny model written to {out}. Use it with THUMBTUNE_MODEL={out}")
    return 0


async def _forget(settings: Settings, who: str) -> str:
    from bot.app import make_data_dir, open_database, person_keys_from
    from bot.forgetting import Copies
    from bot.training import registry_from
    from storage.redact import Redactor
    from storage.repository import Repository

    platform, _, user = who.partition(":")
    make_data_dir(settings)
    persons = person_keys_from(settings)
    async with open_database(settings) as database:
        counts = await Repository(database).forget_person(persons.key(platform, user))
    copies = Copies(settings.artifacts_uri, registry_from(settings), Redactor.from_kinds(settings.redact))
    files = await copies.forget(counts.texts)
    text = (
        f"Deleted {counts.prompts} prompt(s) with their answers, {counts.votes} vote(s) and "
        f"{counts.corrections} correction(s) of {platform} user {user}; took their texts out of "
        f"{files.snapshots} run snapshot(s) and {files.versions} version report(s) (changes.json)."
    )
    if files.failed:
        text += " Some files could not be rewritten: see the log above."
    return text


def cmd_forget(args: argparse.Namespace) -> int:
    platform, sep, user = args.user.partition(":")
    from bot.adapters import PLATFORMS

    if not sep or platform not in PLATFORMS or not user:
        print("thumbtune: USER must be PLATFORM:USER_ID, e.g. slack:U012AB3CD", file=sys.stderr)
        return 2
    settings = _settings(args)
    _setup_logging("WARNING")
    print(asyncio.run(_forget(settings, args.user)))
    return 0


async def _stats(settings: Settings, args: argparse.Namespace) -> str:
    import json

    from bot import stats
    from bot.app import open_database
    from storage.repository import Repository

    async with open_database(settings) as database:
        report = await stats.build_report(Repository(database))
    if args.plot:
        stats.plot(report, args.plot)
    if args.json:
        return json.dumps(report.as_dict(), ensure_ascii=False)
    text = stats.format_table(report)
    return f"{text}\n\nchart saved to {args.plot}" if args.plot else text


def cmd_stats(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging("WARNING")
    print(asyncio.run(_stats(settings, args)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level, settings=settings)
    # Extra trainer options come after `--`.
    extra = [arg for arg in args.extra if arg != "--"]
    from bot.training import check_artifacts, training_unavailable

    problem = training_unavailable(settings)
    if problem:
        print(f"thumbtune: {problem}", file=sys.stderr)
        return 2
    check_artifacts(settings)
    outcome = asyncio.run(_train_now(settings, extra))
    print(json.dumps(outcome.as_dict()))  # the last line of stdout: the run's result
    return 1 if outcome.status == "failed" else 0


async def _train_now(settings: Settings, extra: list[str]) -> TrainingOutcome:
    """One run in the foreground; training runs in its own process, the trainer's output on stderr."""
    from bot.app import open_database
    from bot.training import TrainingRuns, registry_from
    from storage.repository import Repository

    registry = registry_from(settings)
    async with open_database(settings) as database:
        if not await database.try_lead("training"):  # bot.loop.TRAINING_LEAD: a running bot leads
            return TrainingOutcome("busy", "another bot process sharing the database leads training")
        runs = TrainingRuns(settings=settings, repository=Repository(database), registry=registry)
        return await runs.run(extra=extra, relay=False)


def cmd_models(args: argparse.Namespace) -> int:
    from bot.training import registry_from
    from storage.registry import format_versions

    settings = _settings(args)
    print(f"base model (version 0): {settings.model}")
    print(format_versions(registry_from(settings)))
    if settings.implicit and settings.database_exists():
        print(asyncio.run(_agreement(settings)))
    return 0


async def _agreement(settings: Settings) -> str:
    """The implicit signals' agreement with votes, read from the bot's database."""
    from bot.agreement import agreement_table
    from bot.app import open_database
    from storage.repository import Repository

    async with open_database(settings) as database:
        return await agreement_table(Repository(database))


async def _kept_prompts(settings: Settings, texts: list[str], redact: Callable[[str], str]) -> set[str]:
    """Those of ``texts`` the database still holds; none without a database (nothing to check against)."""
    from bot.app import open_database
    from storage.repository import Repository

    if not settings.database_exists():
        return set()
    async with open_database(settings) as database:
        return await Repository(database).kept_prompts(texts, redact=redact)


def cmd_diff(args: argparse.Namespace) -> int:
    from bot.changes import for_people, quoted_questions, render
    from bot.training import registry_from
    from storage.records import DamagedRecord
    from storage.redact import Redactor
    from storage.registry import BASE_VERSION, RegistryError

    settings = _settings(args)
    registry = registry_from(settings)
    version = args.version if args.version is not None else registry.current_version()
    if version == BASE_VERSION:
        print("thumbtune: version 0 is the base model; it has no changes to show", file=sys.stderr)
        return 1
    try:
        info = registry.get(version)
    except RegistryError as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 1
    try:
        record = registry.changes(version)
    except DamagedRecord as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 1
    if record is None:
        print(
            f"thumbtune: version {version} has no record of what changed (trained before it was kept)", file=sys.stderr
        )
        return 1
    # People's prompts it quotes are shown only while the database holds them, as on the dashboard.
    redact = Redactor.from_kinds(settings.redact)
    changes = for_people(record, asyncio.run(_kept_prompts(settings, quoted_questions(record), redact)), redact)
    if args.json:
        print(json.dumps({"version": version, "parent": info.parent, **changes.as_dict()}, ensure_ascii=False))
    else:
        print(render(version, info.parent, changes))
    return 0


async def _dashboard(settings: Settings) -> None:
    from bot.app import open_database
    from bot.metrics import Metrics
    from bot.training import registry_from
    from bot.web import WebServer
    from storage.repository import Repository

    registry = registry_from(settings)
    metrics = Metrics()
    metrics.serving_version.set_function(registry.current_version)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_database(settings) as database:
        web = WebServer.from_settings(
            settings, database=database, repository=Repository(database), registry=registry, metrics=metrics
        )
        await web.start()
        print(f"dashboard at {web.url}/ (Ctrl-C stops it)", flush=True)
        try:
            await stop.wait()
        finally:
            await web.stop()


def cmd_dashboard(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["dashboard_host"] = args.host
    if args.port is not None:
        overrides["dashboard_port"] = args.port
    settings = load_settings(**overrides)
    if not settings.dashboard_port:
        print("thumbtune: THUMBTUNE_DASHBOARD_PORT is 0 (off); set it or pass --port", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level, settings=settings)
    asyncio.run(_dashboard(settings))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from bot.training import registry_from
    from storage.registry import RegistryError

    settings = _settings(args)
    try:
        version = registry_from(settings).rollback(args.version)
    except RegistryError as exc:
        print(f"thumbtune: rollback refused: {exc}", file=sys.stderr)
        return 1
    print(f"version {version} is now current")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from storage.database import DatabaseUnavailable
    from trainer.export import ExportError, export

    settings = _settings(args)
    try:
        export(
            settings.database,
            fmt=args.format,
            out=Path(args.out) if args.out else None,
            gamma=settings.gamma,
            redact=settings.redact,
        )
    except ExportError as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        raise DataUnavailable(f"{settings.db_setting}: {exc}") from exc
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    """Copy the bot's database into an empty one (SQLite ⇄ PostgreSQL), checking the counts."""
    from storage.copy import CopyRefused
    from storage.database import DatabaseUnavailable, safe_url

    settings = _settings(args)
    _setup_logging("WARNING", settings=settings)
    source: Path | str = args.source or settings.database
    target: Path | str = args.to if is_database_url(args.to) else Path(args.to).expanduser()
    if isinstance(source, str) and not is_database_url(source):
        source = Path(source).expanduser()
    if isinstance(source, Path) and not source.is_file():
        print(f"thumbtune: no database at {source} to copy from", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_copy(source, target))
    except CopyRefused as exc:
        print(f"thumbtune: copy refused: {exc}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 2
    where = safe_url(target) if isinstance(target, str) else target
    print(f"copied into {where}: {report}; counts and counters checked")
    return 0


async def _copy(source: Path | str, target: Path | str) -> CopyReport:
    from storage.copy import copy_database
    from storage.database import Database

    async with await Database.open(source) as origin, await Database.open(target) as destination:
        return await copy_database(origin, destination)


def cmd_simulate(args: argparse.Namespace) -> int:
    from bot.simulate import SimulationOptions, for_varied_model, format_result, run_simulation
    from trainer.config import from_arguments

    _setup_logging("INFO" if args.verbose else "WARNING")
    quiet_libraries()
    options = from_arguments(SimulationOptions, args)
    if options.varied:
        options = for_varied_model(options)
    print(format_result(run_simulation(options)))
    return 0


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915  one statement per command and option
    from bot.adapters import PLATFORMS
    from bot.simulate import SimulationOptions
    from trainer.config import add_arguments

    parser = argparse.ArgumentParser(
        prog="thumbtune",
        description="A chat bot that answers with GPT-2 and learns from emoji reactions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bot (shell chat when no platform token is set)")
    run.add_argument("--adapter", choices=PLATFORMS, help="override THUMBTUNE_ADAPTER")
    run.set_defaults(handler=cmd_run)

    tiny = commands.add_parser("make-tiny-model", help="write a tiny model trained locally, for offline use")
    tiny.add_argument("dir", help="folder to write the model into")
    tiny.add_argument(
        "--arch",
        choices=("gpt2", "llama"),
        default="gpt2",
        help="gpt2 (default), or llama: a chat model with a template",
    )
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--steps", type=int, help="training steps (default: the model's own; more with --varied)")
    tiny.add_argument(
        "--varied",
        action="store_true",
        help="trained on many generated dialogues (bot.dialoguegen): most answers are new sentences",
    )
    tiny.set_defaults(handler=cmd_make_tiny_model)

    stats = commands.add_parser("stats", help="approval per model version, with 95% intervals")
    stats.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    stats.add_argument("--plot", metavar="FILE.png", help="also save a chart of approval per version")
    stats.set_defaults(handler=cmd_stats)

    simulate = commands.add_parser(
        "simulate", help="the whole loop with simulated people, offline; prints one JSON object"
    )
    add_arguments(simulate, SimulationOptions, title="simulation")
    simulate.add_argument("--verbose", action="store_true", help="log each round and the trainer's output")
    simulate.set_defaults(handler=cmd_simulate)

    forget = commands.add_parser("forget", help="delete one person's prompts, votes and corrections")
    forget.add_argument("user", help="PLATFORM:USER_ID as the platform shows it, e.g. slack:U012AB3CD")
    forget.set_defaults(handler=cmd_forget)

    diff = commands.add_parser("diff", help="what a version learned: answers before/after, words, data, gate")
    diff.add_argument("version", nargs="?", type=int, help="default: the current version")
    diff.add_argument("--json", action="store_true", help="the whole record as JSON")
    diff.set_defaults(handler=cmd_diff)

    board = commands.add_parser(
        "dashboard", help="serve the web dashboard, /healthz and /metrics from the data alone (the bot may be down)"
    )
    board.add_argument("--host", help="override THUMBTUNE_DASHBOARD_HOST")
    board.add_argument("--port", type=int, help="override THUMBTUNE_DASHBOARD_PORT")
    board.set_defaults(handler=cmd_dashboard)

    train = commands.add_parser("train", help="run one training cycle now, in the foreground")
    train.add_argument("--now", action="store_true", help="train now (the scheduler's vote-count gate is skipped)")
    train.add_argument("extra", nargs=argparse.REMAINDER, help="more `python -m trainer run` options, after --")
    train.set_defaults(handler=cmd_train)

    models = commands.add_parser("models", help="list model versions: parent, status, metrics")
    models.set_defaults(handler=cmd_models)

    rollback = commands.add_parser(
        "rollback", help="make an earlier version current (default: the current one's parent)"
    )
    rollback.add_argument("version", nargs="?", type=int, help="version to serve (0 = the base model)")
    rollback.set_defaults(handler=cmd_rollback)

    db = commands.add_parser("db", help="the database: copy it to PostgreSQL (or back to a SQLite file)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    copy = db_commands.add_parser(
        "copy", help="copy every table into an empty database, checking the counts (refuses a non-empty one)"
    )
    copy.add_argument("--to", required=True, help="postgresql://USER:PASSWORD@HOST/NAME, or a SQLite file path")
    copy.add_argument("--from", dest="source", help="the database to copy (default: the bot's own)")
    copy.set_defaults(handler=cmd_db_copy)

    export = commands.add_parser(
        "export", help="write the feedback as JSONL in TRL's dataset formats, or as a datasets folder (hf)"
    )
    export.add_argument("--format", required=True, choices=["kto", "dpo", "sft", "hf"])
    export.add_argument("--out", help="file to write (default: stdout); for hf the folder (required)")
    export.set_defaults(handler=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)  # everything the bot, its trainer and its exports write is private
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler  # set by each subcommand's parser
    try:
        return handler(args)
    except SettingsError as exc:
        print(f"thumbtune: bad setting: {exc}", file=sys.stderr)
        return 2
    except DataUnavailable as exc:
        # One line for the operator; the traceback only when THUMBTUNE_LOG_LEVEL=DEBUG.
        log.debug("start-up stopped", exc_info=exc)
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
