"""Catching up after downtime: make the stored votes on recent answers match what the platform shows.

Reactions added or removed while the bot was not running never arrive as events. Once
connected, an adapter calls :func:`catch_up`: for its newest answers of the last
``THUMBTUNE_RECONCILE_HOURS`` (at most ``THUMBTUNE_RECONCILE_MAX_MESSAGES``), one after
another, it reads the reactions the answer shows now (:meth:`ReactionReader.reactions_on`)
and has the service reconcile the stored votes with them (missing ones recorded, votes
whose reaction is gone retracted). Live events keep being served meanwhile.

**Race policy: a live reaction event on the answer being reconciled waits.** While one
answer is read and reconciled, the service holds back live reaction events on that
answer (:meth:`BotService.reconciling`) and applies them afterwards, on top:

- an event applied *before* the answer's turn came changed the platform before it was
  sent, so the read that follows already shows it: the reconciliation agrees with it;
- an event that arrives *during* the turn may be missing from the reading (read just
  before it happened); applied after the reconciliation, it is never undone by it.

So a stale reading never retracts a live vote, not even for a moment, and no answer is
read twice. (The other policy tried here, noting live events and re-reading the answer
up to three times, let a reconciliation delete a live vote and record it again, and left
it deleted when the events kept coming.) The wait is held per person and message inside
the service's arrival-order lock, so one person's events keep their order; it lasts one
read of one answer (rate limits included), and events on other answers never wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.service import BotService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShownReactions:
    """People's reactions one answer shows now (the bot's own and other bots' left out)."""

    reactions: tuple[tuple[str, str], ...] = ()  # (platform user id, emoji as the platform names it)
    incomplete: frozenset[str] = frozenset()  # emoji whose list of people was cut short: none retracted


class MessageUnreadable(Exception):
    """The platform would not show an answer's reactions (the message says why, without secrets)."""

    def __init__(self, reason: str, *, gone: bool = False) -> None:
        super().__init__(reason)
        self.gone = gone  # the answer was deleted: its stored votes are kept


class ReactionReader(Protocol):
    """What catching up needs from an adapter (see :class:`bot.adapters.base.Adapter`)."""

    @property
    def platform(self) -> str:
        """The name votes are stored under ("slack")."""
        ...

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        """The reactions on one of our answers; None when it is not ours after all.

        Raises :class:`MessageUnreadable` when the platform cannot show them.
        """
        ...


@dataclass(frozen=True)
class CaughtUp:
    """What one catch-up after downtime did."""

    checked: int = 0  # answers whose reactions were read
    added: int = 0  # votes recorded from reactions added while the bot was away
    retracted: int = 0  # votes retracted for reactions removed meanwhile
    failed: int = 0  # answers whose reactions could not be read
    elsewhere: int = 0  # answers left to another process (another Discord shard's)


async def catch_up(
    service: BotService,
    reader: ReactionReader,
    *,
    hours: float,
    most: int,
    mine: Callable[[str], Awaitable[bool]] | None = None,
) -> CaughtUp:
    """Reconcile the stored votes on the newest ``most`` answers of the last ``hours`` (0 = off).

    One answer at a time (the platform client waits out rate limits); one that cannot be
    read is logged and skipped. ``mine``: whether this process reads an answer (a process
    that runs some of a bot's shards reads those of its shards; together the processes
    read the same ``most`` answers one process would). Ends with one log line that sums it up.
    """
    if hours <= 0 or most <= 0:
        return CaughtUp()
    platform = reader.platform
    keys = await service.recent_answers(platform, since=time.time() - hours * 3600, limit=most)
    checked = added = retracted = failed = elsewhere = 0
    for key in keys:
        if mine is not None and not await mine(key):
            elsewhere += 1
            continue
        async with service.reconciling(key):
            try:
                shown = await reader.reactions_on(key)
            except MessageUnreadable as exc:
                failed += 1
                if exc.gone:
                    log.info("%s: catching up: answer %s is gone (%s); its votes are kept", platform, key, exc)
                else:
                    log.warning("%s: catching up: cannot read the reactions on %s (%s); going on", platform, key, exc)
                continue
            except Exception:
                failed += 1
                log.exception("%s: catching up: cannot read the reactions on %s; going on", platform, key)
                continue
            checked += 1
            if shown is None:
                continue  # not ours after all: its votes are left alone
            result = await service.reconcile(
                platform=platform, message_key=key, reactions=shown.reactions, incomplete=shown.incomplete
            )
            added += result.added
            retracted += result.retracted
    log.info(
        "%s: caught up on %d answer(s) from the last %g h: %d vote(s) added, %d retracted, %d unreadable%s",
        platform,
        checked,
        hours,
        added,
        retracted,
        failed,
        f", {elsewhere} left to the processes of other shards" if elsewhere else "",
    )
    return CaughtUp(checked=checked, added=added, retracted=retracted, failed=failed, elsewhere=elsewhere)
