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

A platform with a connection (Slack, Discord) derives from :class:`Platform`, the lifecycle
they share written once (connect, answer left-over prompts, catch up on reactions, answer
prompts missed while down, serve, drain within the grace, close); its module supplies the
transport and the payload mapping only. :class:`ChatPrefix` is the one parser of chat
prefixes (``better:``) for every platform; ``compare:`` is read by the core, once
(:func:`bot.comparison.split_compare_request`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from bot.adapters import PLATFORMS
from bot.catchup import CaughtUp, ShownReactions, catch_up
from bot.pending import LeftOver, answer_left_over

if TYPE_CHECKING:
    from typing_extensions import Self

    from bot.service import BotService
    from bot.settings import Settings
    from storage.repository import PendingPrompt

log = logging.getLogger(__name__)

Found = TypeVar("Found")  # a platform's message found by the missed-prompt scan


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


@dataclass(frozen=True)
class ChatPrefix:
    """A word that starts a chat message to say what it is (``better:``), matched case-blind.

    The one parser of chat prefixes for every platform: blanks around the message and the
    configured word are ignored, and :meth:`rest` gives what follows the word.
    """

    word: str
    _normal: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_normal", self.word.strip().lower())

    def rest(self, text: str) -> str | None:
        """What follows the prefix in ``text`` (blanks around it kept out), or None without it."""
        stripped = text.strip()
        size = len(self._normal)
        if not self._normal or stripped[:size].lower() != self._normal:
            return None
        return stripped[size:]

    def starts(self, text: str) -> bool:
        return self.rest(text) is not None


class InFlight:
    """The answers a platform is working on, waited for within the grace on stop.

    Tasks of its own (:meth:`spawn`) are held here (the event loop keeps only weak
    references), their failures logged with what they were handling, and cancelled when
    the grace is over or the platform closes. A handler the platform library runs in a
    task of its own is only counted while it answers (:meth:`holding`): it is waited for,
    never cancelled, so one that posted its answer still marks the prompt answered.
    """

    def __init__(self, platform: str, *, logger: logging.Logger = log) -> None:
        self.platform = platform
        self.log = logger
        self._owned: set[asyncio.Task[Any]] = set()
        self._held: set[asyncio.Task[Any]] = set()

    def __bool__(self) -> bool:
        return any(not task.done() for task in self._owned | self._held)

    def spawn(self, work: Coroutine[Any, Any, None], *, what: str) -> asyncio.Task[None]:
        """Run ``work`` in a task held here; a failure is logged with ``what`` (never a payload)."""
        task = asyncio.create_task(work)
        self._owned.add(task)
        task.add_done_callback(functools.partial(self._done, what))
        return task

    def _done(self, what: str, task: asyncio.Task[Any]) -> None:
        self._owned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("%s: handling %s failed; the bot goes on", self.platform, what, exc_info=task.exception())

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Count the running task (a handler the platform library started) as in flight meanwhile."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._held.add(task)
        try:
            yield
        finally:
            self._held.discard(task)

    async def drain(self, grace_s: float) -> None:
        """Let what is in flight finish within ``grace_s``; tasks of its own still running are
        cancelled (their prompts stay pending: the next run answers them)."""
        running = _running(self._owned | self._held)
        if not running:
            return
        self.log.info("%s: stopping; finishing %d answer(s) in flight", self.platform, len(running))
        _, unfinished = await asyncio.wait(running, timeout=grace_s)
        if unfinished:
            await self.cancel()
            self.log.warning(
                "%s: %d answer(s) not finished in time; answered after the restart", self.platform, len(unfinished)
            )

    async def cancel(self) -> None:
        """Cancel the tasks of its own still running and wait until they have ended."""
        chosen = _running(self._owned)
        for task in chosen:
            task.cancel()
        if chosen:
            await asyncio.wait(chosen)


def _running(tasks: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """The tasks not done yet, the one asking left out (it cannot wait for itself)."""
    return {task for task in tasks if not task.done() and task is not asyncio.current_task()}


@dataclass(frozen=True)
class Downtime:
    """What a platform caught up on once connected."""

    votes: CaughtUp  # reactions given and taken back while it was away
    prompts: int  # prompts sent while it was away, taken to be answered
    left_over: LeftOver = field(default_factory=LeftOver)  # prompts the last run took and did not answer


class LifecycleSettings(Protocol):
    """Where a platform's lifecycle bounds come from: the settings, or a platform's config of them."""

    @property
    def reconcile_hours(self) -> float: ...
    @property
    def reconcile_max_messages(self) -> int: ...
    @property
    def pending_hours(self) -> float: ...
    @property
    def shutdown_grace_s(self) -> float: ...


@dataclass(frozen=True)
class Lifecycle:
    """How far back a platform looks once connected, and how long it drains on stop (from the settings)."""

    reconcile_hours: float  # catch up on answers (and missed prompts) this recent; 0 = off
    reconcile_max_messages: int  # ... but on at most this many, newest first
    pending_hours: float  # answer prompts left pending by the last run if this recent
    shutdown_grace_s: float  # on stop, finish the answers in flight for up to this long

    @classmethod
    def from_settings(cls, settings: LifecycleSettings) -> Lifecycle:
        return cls(
            reconcile_hours=settings.reconcile_hours,
            reconcile_max_messages=settings.reconcile_max_messages,
            pending_hours=settings.pending_hours,
            shutdown_grace_s=settings.shutdown_grace_s,
        )


class Platform(Adapter, Generic[Found]):
    """The lifecycle every chat platform shares, written once; a platform supplies its transport.

    :meth:`serve`: :meth:`sign_in` → read the prompts left pending (before connecting, so one
    taken by this run is answered by this run) → :meth:`connect_and_serve`, the platform's
    transport, which calls :meth:`connected_now` each time it is connected and serves until
    stopped. Once connected (:meth:`after_downtime`, while live events are served): answer
    the left-over prompts → catch up on reactions → answer the prompts missed while down.
    On stop: :meth:`stop_catching_up`, then :meth:`drain` the answers in flight within
    ``THUMBTUNE_SHUTDOWN_GRACE_S`` before the platform closes its connection.

    A platform module supplies the transport (:meth:`connect_and_serve`, :meth:`stop`) and
    the payload mapping: :meth:`reactions_on`, :meth:`answer_pending`, and for the missed
    prompt scan :meth:`missed_since` (the candidates) and :meth:`take_missed` (store one).
    """

    def __init__(self, service: BotService, *, lifecycle: Lifecycle, correction_prefix: str) -> None:
        self.service = service
        self.lifecycle = lifecycle
        self.correction = ChatPrefix(correction_prefix)
        # The lifecycle logs under the platform's module (bot.adapters.slack.adapter), with its lines.
        self.log = logging.getLogger(type(self).__module__)
        self.in_flight = InFlight(self.platform, logger=self.log)
        self.draining = False  # stopping: new prompts are left for the next run
        self._left_over: list[PendingPrompt] = []  # pending before this run started
        self._catching_up: asyncio.Task[Downtime] | None = None

    @property
    def busy(self) -> bool:
        """Whether an answer is in flight."""
        return bool(self.in_flight)

    def is_draining(self) -> bool:
        """Whether the platform is stopping; for the parts that ask when an event comes."""
        return self.draining

    # --- the template ---------------------------------------------------------------
    async def serve(self) -> None:
        await self.sign_in()
        self._left_over = await self.service.pending_prompts(self.platform)
        await self.connect_and_serve()

    async def sign_in(self) -> None:
        """Check the credentials before anything else (a refusal raises); by default nothing."""
        return None

    @abc.abstractmethod
    async def connect_and_serve(self) -> None:
        """The transport: connect, call :meth:`connected_now` once up, serve until stopped, close."""

    def connected_now(self) -> None:
        """Connected (again): catch up on what happened meanwhile, unless that runs already."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.create_task(
                self.after_downtime(), name=f"thumbtune: {self.platform} catch-up after downtime"
            )

    async def after_downtime(self) -> Downtime:
        """Answer the left-over prompts, re-read reactions, answer prompts missed while down;
        a step that fails is logged and the next one goes on (live events are served meanwhile)."""
        left_over = await self.answer_left_over()
        votes, prompts = CaughtUp(), 0
        try:
            votes = await self.catch_up()
        except Exception:  # e.g. the database; live votes keep counting
            self.log.exception("%s: catching up on reactions failed; the bot goes on", self.platform)
        try:
            prompts = await self.answer_missed()
        except Exception:
            self.log.exception("%s: looking for prompts missed while down failed; the bot goes on", self.platform)
        return Downtime(votes=votes, prompts=prompts, left_over=left_over)

    async def stop_catching_up(self) -> None:
        """Stopping: cut the catch-up short (the next start does it again)."""
        task = self._catching_up
        if task is not None and not task.done():
            self.log.info(
                "%s: stopping; the catch-up after downtime is cut short (the next start does it again)", self.platform
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drain(self) -> None:
        """Take no new prompts; finish the answers in flight within the grace (the rest stay pending)."""
        self.draining = True
        await self.in_flight.drain(self.lifecycle.shutdown_grace_s)

    # --- the steps --------------------------------------------------------------------
    async def answer_left_over(self) -> LeftOver:
        """Answer the prompts the last run took and did not answer (bot.pending), once."""
        left_over, self._left_over = self._left_over, []
        try:
            return await answer_left_over(self, left_over, hours=self.lifecycle.pending_hours)
        except Exception:
            self.log.exception("%s: answering prompts left pending failed; the bot goes on", self.platform)
            return LeftOver()

    async def catch_up(self) -> CaughtUp:
        """Make the stored votes on recent answers match the reactions they show now (bot.catchup)."""
        return await catch_up(
            self.service,
            self,
            hours=self.lifecycle.reconcile_hours,
            most=self.lifecycle.reconcile_max_messages,
            mine=self.catches_up_on,
        )

    async def catches_up_on(self, message_key: str) -> bool:
        """Whether this process reads the reactions on one of the platform's answers after downtime:
        by default every one; a process that runs some of a bot's shards, those of its shards."""
        return True

    async def answer_missed(self) -> int:
        """Answer the prompts people sent while the bot was down; how many were taken.

        Bounded like the reaction catch-up: of the candidates the platform finds from the last
        ``reconcile_hours``, the newest ``reconcile_max_messages``, oldest first. Each is
        claimed by its message like a live prompt, so a late live event, a pending prompt or
        a second restart never answers it twice.
        """
        hours, most = self.lifecycle.reconcile_hours, self.lifecycle.reconcile_max_messages
        if hours <= 0 or most <= 0:
            return 0
        found = await self.missed_since(hours=hours, most=most)
        taken = 0
        for _, message, what in sorted(found, key=lambda candidate: candidate[0])[-most:]:
            if self.draining:
                break  # stopping: what is left is found again by the next run
            answering = await self.take_missed(message)
            if answering is not None:
                taken += 1
                self.in_flight.spawn(answering, what=what)
        self.log.info(
            "%s: found %d prompt(s) missed while down in the last %g h; answering them", self.platform, taken, hours
        )
        return taken

    @abc.abstractmethod
    async def missed_since(self, *, hours: float, most: int) -> Sequence[tuple[float, Found, str]]:
        """(order, message, description for the log) of people's prompts to the bot since ``hours``
        ago with no answer of the bot's; ``most`` bounds what is read per conversation."""

    @abc.abstractmethod
    async def take_missed(self, message: Found) -> Coroutine[Any, Any, None] | None:
        """Store one missed prompt as pending; the answering to run, or None (taken already, a bot's)."""
