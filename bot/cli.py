"""The `thumbtune` command (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("thumbtune")


def _quiet_libraries() -> None:
    # Progress bars and advisory warnings from the ML libraries drown the chat.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "adapter", None):
        overrides["adapter"] = args.adapter
    return load_settings(**overrides)


async def _run(settings: Settings) -> int:
    from bot.app import open_runtime
    from bot.generation import ModelLoadError

    adapter = settings.chosen_adapter()
    if adapter == "discord" and settings.discord_token is None:  # say so before loading the model
        print("thumbtune: the discord adapter needs DISCORD_TOKEN (see README.md, Discord)", file=sys.stderr)
        return 2
    try:
        async with open_runtime(settings) as runtime:
            if adapter == "shell":
                from bot.adapters.shell import ShellChat

                await ShellChat(runtime.service, correction_prefix=settings.correction_prefix).run()
            elif adapter == "discord":
                from bot.adapters.discord import DiscordStartupError, run_discord

                assert settings.discord_token is not None
                try:
                    await run_discord(
                        service=runtime.service,
                        token=settings.discord_token.get_secret_value(),
                        correction_prefix=settings.correction_prefix,
                        guild_id=settings.discord_guild_id,
                    )
                except DiscordStartupError as exc:
                    print(f"thumbtune: {exc}", file=sys.stderr)
                    return 1
            else:
                print(f"thumbtune: the {adapter} adapter is not available yet", file=sys.stderr)
                return 2
    except ModelLoadError as exc:
        print(f"thumbtune: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    _quiet_libraries()
    return asyncio.run(_run(settings))


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    _setup_logging("INFO")
    _quiet_libraries()
    import torch

    from bot.tinymodel import TinyModelSpec, make_tiny_model

    torch.set_num_threads(1)
    out = make_tiny_model(Path(args.dir), TinyModelSpec(seed=args.seed, steps=args.steps))
    print(f"Tiny model written to {out}. Use it with THUMBTUNE_MODEL={out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thumbtune",
        description="A chat bot that answers with GPT-2 and learns from emoji reactions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bot (shell chat when no platform token is set)")
    run.add_argument("--adapter", choices=["shell", "slack", "discord"], help="override THUMBTUNE_ADAPTER")
    run.set_defaults(handler=cmd_run)

    tiny = commands.add_parser("make-tiny-model", help="write a tiny GPT-2 trained locally, for offline use")
    tiny.add_argument("dir", help="folder to write the model into")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--steps", type=int, default=300, help="training steps (default 300, ~10 s)")
    tiny.set_defaults(handler=cmd_make_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(f"thumbtune: bad setting: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
