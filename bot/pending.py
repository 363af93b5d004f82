"""Prompts taken but not answered yet: answered after a restart, or apologised for when too old.

The platform adapters (Slack, Discord) store a prompt as pending
(:meth:`BotService.take_prompt`) before the platform learns that it arrived (Slack's 200
or Socket Mode ack), and mark it answered once the reply is posted. The shell answers
at once and leaves none, but answers one it finds (written by another program). A
crash, a kill or a stop past the shutdown grace leaves pending prompts behind; the next
start reads them before it connects (so none taken meanwhile is answered twice) and,
once connected, has the adapter answer each one where it was asked (:meth:`Adapter.answer_pending`): those younger than
``THUMBTUNE_PENDING_HOURS`` get their answer (the one stored before the crash, else a
new one), older ones an apology. Nothing acknowledged goes without a reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from storage.repository import PendingPrompt

log = logging.getLogger(__name__)


class PendingAnswerer(Protocol):
    """What answering left-over prompts needs from an adapter (see :class:`bot.adapters.base.Adapter`)."""

    @property
    def platform(self) -> str: ...

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        """Answer (or, ``late``, apologise for) one pending prompt where it was asked; mark it answered."""
        ...


@dataclass(frozen=True)
class LeftOver:
    """What answering the prompts left over from before a restart did."""

    answered: int = 0
    apologised: int = 0  # older than THUMBTUNE_PENDING_HOURS
    failed: int = 0  # still pending: tried again at the next start


async def answer_left_over(answerer: PendingAnswerer, prompts: Sequence[PendingPrompt], *, hours: float) -> LeftOver:
    """Answer prompts left pending by the last run, oldest first; one that fails is logged and kept."""
    answered = apologised = failed = 0
    oldest = time.time() - hours * 3600
    for pending in prompts:
        late = pending.received_at < oldest
        try:
            await answerer.answer_pending(pending, late=late)
        except Exception:
            failed += 1
            log.exception("%s: cannot answer the prompt left pending from event %s", pending.platform, pending.event_id)
            continue
        apologised += late
        answered += not late
    if prompts:
        log.info(
            "%s: %d prompt(s) left pending by the last run: %d answered, %d too old (apologised), %d failed",
            answerer.platform,
            len(prompts),
            answered,
            apologised,
            failed,
        )
    return LeftOver(answered=answered, apologised=apologised, failed=failed)
