"""`python -m trainer ...`: the offline side, configured only by its arguments.

The bot (its schedule, ``thumbtune train --now``) writes a run's snapshot to the artifact
store and runs ``python -m trainer run --snapshot URI`` as a subprocess, with arguments
built from its settings; the trainer never reads the bot's settings or its database.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from storage import PRIVATE_UMASK
from storage.redact import KINDS as REDACT_KINDS
from storage.redact import parse_kinds
from storage.registry import ModelRegistry, RegistryError, format_versions
from trainer.config import DataConfig, GateConfig, JobConfig, TrainConfig, add_arguments, from_arguments
from trainer.export import FORMATS, ExportError, export
from trainer.progress import enable_download_bars
from trainer.requirements import missing_extra


def cmd_run(args: argparse.Namespace) -> int:
    problem = missing_extra("python -m trainer run")
    if problem:
        print(f"trainer: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    from transformers.utils import logging as hf_logging

    from trainer.job import RunOptions, run
    from trainer.snapshot import SnapshotError

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    enable_download_bars()  # a base model fetched from the Hub, in a terminal
    job = from_arguments(JobConfig, args)
    train, gate = from_arguments(TrainConfig, args), from_arguments(GateConfig, args)
    try:
        result = run(RunOptions(**dataclasses.asdict(job), train=train, gate=gate))
    except SnapshotError as exc:
        print(f"trainer: cannot read the snapshot: {exc}", file=sys.stderr)
        return 2
    # One JSON line on stdout for people; the bot reads the same from result.json in the store.
    print(json.dumps(result.as_dict()))
    return 1 if result.status == "failed" else 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        export(
            Path(args.db),
            fmt=args.format,
            out=Path(args.out) if args.out else None,
            gamma=args.gamma,
            redact=args.redact,
        )
    except ExportError as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    print(format_versions(ModelRegistry(args.registry)))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        version = ModelRegistry(args.registry).rollback(args.version)
    except RegistryError as exc:
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 1
    print(f"version {version} is current")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="thumbtune's offline trainer.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="one training run: a snapshot -> KTO -> eval gate -> registry")
    add_arguments(run, JobConfig, title="job")
    add_arguments(run, TrainConfig, title="training")
    add_arguments(run, GateConfig, title="eval gate")
    run.set_defaults(handler=cmd_run)

    export = commands.add_parser(
        "export", help="write the feedback as JSONL in TRL's formats, or a datasets folder (hf)"
    )
    export.add_argument("--db", required=True)
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", help="file to write (default: stdout); for hf the folder (required)")
    export.add_argument(
        "--gamma", type=float, default=DataConfig.gamma, help="thread credit discount (default: %(default)s = off)"
    )
    export.add_argument(
        "--redact",
        type=parse_kinds,
        default=REDACT_KINDS,
        help=f"what is scrubbed: all (default), off, or a comma list of {', '.join(REDACT_KINDS)}",
    )
    export.set_defaults(handler=cmd_export)

    models = commands.add_parser("models", help="list the versions in the registry")
    models.add_argument("--registry", required=True)
    models.set_defaults(handler=cmd_models)

    rollback = commands.add_parser("rollback", help="make an earlier version current (default: the parent)")
    rollback.add_argument("--registry", required=True)
    rollback.add_argument("version", nargs="?", type=int)
    rollback.set_defaults(handler=cmd_rollback)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)  # a version and a run's result hold what people wrote
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler  # set by each subcommand's parser
    return handler(args)
