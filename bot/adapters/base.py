"""The adapter contract: what every chat platform (Slack, Discord, the shell) gives the bot.

An adapter translates one platform's payloads into the core's values (:mod:`bot.events`)
and back, and talks to :class:`~bot.service.BotService` only. `thumbtune run` starts every
adapter the same way (:func:`bot.cli._run`): check the settings before the model loads,
build it from the service and the settings, plug the retraining loop's announcements
into :meth:`Adapter.announce`, and serve. Catching up after downtime
(:mod:`bot.catchup`) reads reactions through :meth:`Adapter.reactions_on`.

Commit, then acknowledge: a prompt is stored as pending (:meth:`BotService.take_prompt`)
before the platform is told it arrived, a vote is stored before that too; what the
platform acknowledged and the bot did not answer (a crash, a stop) is answered after the
restart through :meth:`Adapter.answer_pending` (:mod:`bot.pending`).
"""

from __future__ import annotations

import abc
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bot.adapters import PLATFORMS
from bot.catchup import ShownReactions

if TYPE_CHECKING:
    from typing_extensions import Self

    from bot.service import BotService
    from bot.settings import Settings
    from storage.repository import PendingPrompt


@dataclass(frozen=True)
class Need:
    """What one feature needs from its platform, declared once in the adapter.

    Discord's invite link is derived from these; Slack's manifest is tested against them
    (tests/test_slack.py), and the fakes enforce what the platform would.
    """

    feature: str
    grants: tuple[str, ...]  # Discord permissions (discord.Permissions names) / Slack bot scopes
    methods: tuple[str, ...] = ()  # Slack Web API methods the feature calls
    events: tuple[str, ...] = ()  # Slack event subscriptions it needs


class StartupError(Exception):
    """The platform cannot start the bot; the message says what to change, in one line, without secrets."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # what `thumbtune run` exits with (2: a missing setting)


class Adapter(abc.ABC):
    """One chat platform behind the core service."""

    platform: ClassVar[str]  # the name stored with prompts and votes ("slack")

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Fail before the model loads when a platform setting is missing or malformed.

        Raises :class:`~bot.settings.SettingsError` naming the variable, or :class:`StartupError`.
        """
        return None  # by default there is nothing to check

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, service: BotService, settings: Settings) -> Self:
        """The adapter `thumbtune run` serves (settings already checked by :meth:`check_settings`)."""

    @abc.abstractmethod
    async def serve(self) -> None:
        """Connect and serve until :meth:`stop`, the end of the platform (end of input), or cancellation.

        A refusal at start-up (a bad token) raises :class:`StartupError` or
        :class:`~bot.settings.SettingsError`. Everything it opened is closed when it returns.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Make :meth:`serve` return; safe to call more than once, and before or after serving."""

    def connected(self) -> bool | None:
        """Whether the platform connection is up now (``/healthz``); None where it cannot be told."""
        return None

    @abc.abstractmethod
    async def announce(self, text: str) -> None:
        """Say something of the bot's own (a new model version went live); nowhere to say it: nothing."""

    @abc.abstractmethod
    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        """People's reactions on one of our answers as the platform shows them now.

        None when the message turns out not to be ours. Raises
        :class:`~bot.catchup.MessageUnreadable` when the platform will not show them.
        """

    @abc.abstractmethod
    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        """Answer one prompt stored as pending, where it was asked, then mark it answered.

        The reply comes from :meth:`BotService.answer_pending` (``late``: too old to answer,
        an apology). Used for live prompts and for those left over from before a restart.
        A platform that refuses the post for good still marks it answered; an error that
        may pass (a lost connection) raises and leaves it pending.
        """


def adapter_class(platform: str) -> type[Adapter]:
    """The adapter of one platform; its module (and platform library) is imported only now."""
    if platform not in PLATFORMS:
        raise ValueError(f"no adapter for {platform!r}; there are {', '.join(PLATFORMS)}")
    adapter: type[Adapter] = importlib.import_module(f"bot.adapters.{platform}").ADAPTER
    return adapter


def _plain(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


@asynccontextmanager
async def best_effort(
    what: str, *, logger: logging.Logger, describe: Callable[[Exception], str] = _plain
) -> AsyncIterator[None]:
    """A cosmetic call (typing indicator, pre-added reaction, ✅ mark): a failure is logged and skipped.

    Answers and votes never go through this: their failures must be seen. ``describe``
    turns the platform's error into a short reason (never headers or tokens).
    """
    try:
        yield
    except Exception as exc:
        logger.warning("%s failed (%s); going on without it", what, describe(exc))
