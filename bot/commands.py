"""Chat commands: `stats` for everyone; `retrain`, `models`, `rollback [VERSION]` for admins.

A message to the bot whose whole text is one of these (or `forget me`) runs the command
instead of being answered by the model. The admin actions are provided by the running
loop (bot/loop.py), so the service itself never trains or loads models.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot import stats
from bot.events import Reply
from bot.forgetting import Copies
from storage.identity import PersonKeys
from storage.repository import ForgetCounts, Repository

log = logging.getLogger(__name__)

CHARTS_KEPT = 10
FORGET_ME = re.compile(r"(?i)(?:please\s+)?forget\s+me[.!]?")

_COMMAND = re.compile(r"(?i)^\s*(stats|models|retrain|rollback)(?:\s+v?(\d+))?\s*[.!]?\s*$")


@dataclass(frozen=True)
class Command:
    name: str
    version: int | None = None


def parse_command(text: str) -> Command | None:
    """The command a message asks for, or None for an ordinary prompt."""
    match = _COMMAND.match(text)
    if not match:
        return None
    name, version = match.group(1).lower(), match.group(2)
    if version is not None and name != "rollback":
        return None  # "stats 3" is a question, not a command
    return Command(name=name, version=int(version) if version is not None else None)


class AdminActions(Protocol):
    """What admins can ask the running bot to do (implemented by bot.loop.Loop)."""

    async def retrain(self) -> str: ...

    async def models(self) -> str: ...

    async def rollback(self, version: int | None) -> str: ...


class Commands:
    """Runs the chat commands and `forget me`."""

    def __init__(
        self,
        *,
        repository: Repository,
        persons: PersonKeys,
        admins: Collection[str] = (),
        shell_is_admin: bool = True,
        charts_dir: Path | None = None,
        admin_actions: AdminActions | None = None,
        copies: Copies | None = None,
    ) -> None:
        self.repository = repository
        self.persons = persons
        self.admins = frozenset(admins)
        self.shell_is_admin = shell_is_admin  # the person at the local shell runs the bot
        self.charts_dir = charts_dir
        self.admin_actions = admin_actions  # the running loop; None: a bot that cannot train
        self.copies = copies  # files made from the database that `forget me` must reach too

    def is_admin(self, platform: str, user: str) -> bool:
        return f"{platform}:{user}" in self.admins or (platform == "shell" and self.shell_is_admin)

    async def run_command(self, command: Command, *, platform: str, user: str) -> Reply:
        if command.name == "stats":
            report = await stats.build_report(self.repository)
            chart = None
            if self.charts_dir is not None:
                chart = stats.plot(report, self.charts_dir / f"stats-{time.strftime('%Y%m%d-%H%M%S')}.png")
                _keep_newest(self.charts_dir, "stats-*.png", keep=CHARTS_KEPT)
            return Reply(stats.format_table(report), ok=False, attachment=chart, preformatted=True)
        if not self.is_admin(platform, user):
            return Reply(f"Sorry, only the bot's admins can use `{command.name}` (THUMBTUNE_ADMINS).", ok=False)
        if self.admin_actions is None:
            return Reply(f"`{command.name}` is not available in this bot.", ok=False)
        try:
            if command.name == "retrain":
                text = await self.admin_actions.retrain()
            elif command.name == "models":
                text = await self.admin_actions.models()
            else:
                text = await self.admin_actions.rollback(command.version)
        except Exception as exc:  # an admin command must not take the bot down
            log.exception("admin command %s failed", command.name)
            text = f"`{command.name}` failed: {exc}"
        return Reply(text, ok=False, preformatted=command.name == "models")

    async def forget(self, platform: str, user: str) -> Reply:
        """Delete everything one person gave us; later training and exports cannot see it."""
        counts = await self.repository.forget_person(self.persons.key(platform, user))
        text = (
            f"Done: I deleted {counts.prompts} prompt(s) with their answers, {counts.votes} vote(s) "
            f"and {counts.corrections} correction(s) of yours."
        )
        if counts.signals:
            text += f" I also deleted {counts.signals} reply signal(s) (thanks, complaints, questions asked again)."
        if self.copies is not None:
            files = await self.copies.forget(counts.texts)
            log.info("forgot a %s person: %s; files rewritten: %s", platform, _counted(counts), files)
            if files.snapshots or files.versions:
                text += f" I also took them out of {files.snapshots + files.versions} training file(s)."
            if files.failed:
                text += " Some training files could not be changed yet; the operator has been told."
        else:
            log.info("forgot a %s person: %s", platform, _counted(counts))
        return Reply(text, ok=False)


def _keep_newest(folder: Path, pattern: str, *, keep: int) -> None:
    """Charts are posted right away; keep a few for the operator and delete the rest."""
    for old in sorted(folder.glob(pattern), reverse=True)[keep:]:
        old.unlink(missing_ok=True)


def _counted(counts: ForgetCounts) -> str:
    """The numbers of a forget, for the log (never the texts)."""
    return (
        f"{counts.prompts} prompt(s), {counts.votes} vote(s), {counts.corrections} correction(s), "
        f"{counts.signals} implicit signal(s), {counts.contexts} other dialogue(s) rewritten"
    )
