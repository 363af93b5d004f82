"""Votes: reactions on the bot's answers (and corrections of them) become stored feedback.

A reaction is read once (:meth:`Votes.read_reaction`: its canonical name, reward, verdict
and flag); one person's events on one message are applied in arrival order; a catch-up
after downtime (bot.catchup) reconciles the stored votes with what the platform shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.comparison import Verdict, verdict_named
from bot.events import IncomingCorrection, IncomingReaction
from bot.feedback import EmojiTable, normalize_emoji
from bot.metrics import Metrics
from storage.identity import PersonKeys
from storage.repository import ComparisonRef, Repository, VoteOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Meaning:
    """What one reaction stands for, decided once by :meth:`Votes.read_reaction`."""

    name: str  # the canonical name: what a vote row stores ("+1", "👍")
    reward: float | None  # from THUMBTUNE_EMOJI_REWARDS; None: not a rating
    verdict: Verdict | None  # what it says on a comparison; None: no verdict
    flag: bool  # THUMBTUNE_FLAG_EMOJI: never train on the answer

    @property
    def counts(self) -> bool:
        """A rating, a verdict or a flag: worth handing to the service at all."""
        return self.reward is not None or self.verdict is not None or self.flag


@dataclass(frozen=True)
class Reconciled:
    added: int = 0
    retracted: int = 0


class Votes:
    def __init__(
        self,
        *,
        repository: Repository,
        persons: PersonKeys,
        emoji: EmojiTable,
        metrics: Metrics,
        flag_emoji: Collection[str] = (),
        daily_vote_cap: int = 0,
        max_correction_chars: int = 2000,
    ) -> None:
        self.repository = repository
        self.persons = persons
        self.emoji = emoji
        self.metrics = metrics
        self.flag_emoji = frozenset(normalize_emoji(name) for name in flag_emoji)
        self.daily_vote_cap = daily_vote_cap
        self.max_correction_chars = max_correction_chars
        self._reaction_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._reconciling: dict[str, asyncio.Event] = {}  # message key -> set when its catch-up is done

    def read_reaction(self, emoji: str) -> Meaning:
        """The one place a reaction is read: its canonical name, reward, verdict and flag.

        Adapters pass the emoji as their platform names it (``+1::skin-tone-2``, ``👍🏽``);
        it is normalised here, once, and everything after works on the canonical name.
        """
        name = normalize_emoji(emoji)
        return Meaning(
            name=name, reward=self.emoji.reward_named(name), verdict=verdict_named(name), flag=name in self.flag_emoji
        )

    def is_reaction_emoji(self, emoji: str) -> bool:
        """A rating from the emoji table, a comparison verdict or the flag."""
        return self.read_reaction(emoji).counts

    async def on_reaction(self, reaction: IncomingReaction) -> VoteOutcome:
        # One person's events on one message are applied in arrival order: an add and a
        # quick removal (or a replay after a resume) must not overtake each other.
        async with self._in_order(reaction):
            await self._after_reconciling(reaction.message_key)
            meaning = self.read_reaction(reaction.emoji)
            outcome = await self._on_reaction(reaction, meaning)
        if outcome is VoteOutcome.RECORDED:
            # One series per meaning: Slack's `one` and the unicode 1⃣ are one verdict.
            label = meaning.name if meaning.verdict is None else meaning.verdict.emoji
            self.metrics.votes.labels(label).inc()
        return outcome

    async def on_reaction_removed(self, reaction: IncomingReaction) -> VoteOutcome:
        async with self._in_order(reaction):
            await self._after_reconciling(reaction.message_key)
            return await self._on_reaction_removed(reaction, self.read_reaction(reaction.emoji))

    @asynccontextmanager
    async def reconciling(self, message_key: str) -> AsyncIterator[None]:
        """Catching up on one answer (bot.catchup): live reaction events on it wait until it is done.

        They wait inside their arrival-order lock, so one person's events keep their order.
        """
        done = self._reconciling[message_key] = asyncio.Event()
        try:
            yield
        finally:
            del self._reconciling[message_key]
            done.set()

    async def _after_reconciling(self, message_key: str) -> None:
        done = self._reconciling.get(message_key)
        if done is not None:
            log.debug("a reaction on %s waits for the catch-up of that answer", message_key)
            await done.wait()

    @asynccontextmanager
    async def _in_order(self, reaction: IncomingReaction) -> AsyncIterator[None]:
        key = (reaction.platform, reaction.message_key, reaction.user)
        lock = self._reaction_locks.setdefault(key, asyncio.Lock())  # FIFO for waiters
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._reaction_locks.get(key) is lock:
                del self._reaction_locks[key]

    async def _on_reaction(self, reaction: IncomingReaction, meaning: Meaning) -> VoteOutcome:
        if not meaning.counts:
            return VoteOutcome.UNKNOWN_EMOJI
        comparison = await self.repository.comparison_by_message(reaction.message_key)
        if comparison is not None:
            return await self._on_verdict(reaction, comparison, meaning)
        if meaning.reward is None and not meaning.flag:
            return VoteOutcome.UNKNOWN_EMOJI
        target = await self.repository.response_by_message(reaction.message_key)
        if target is None:
            return VoteOutcome.UNKNOWN_RESPONSE
        event = _event(reaction.platform, reaction.event_id)
        if meaning.flag:
            return await self.repository.flag_response(target.response_id, event=event)
        assert meaning.reward is not None
        voter = self.persons.key(reaction.platform, reaction.user)
        return await self.repository.record_vote(
            response_id=target.response_id,
            voter=voter,
            emoji=meaning.name,
            reward=meaning.reward,
            event=event,
            daily_cap=self.daily_vote_cap,
        )

    async def _on_verdict(self, reaction: IncomingReaction, comparison: ComparisonRef, meaning: Meaning) -> VoteOutcome:
        """A reaction on a comparison: 1️⃣ / 2️⃣ / 🤝 / 👎 become one vote on each candidate."""
        event = _event(reaction.platform, reaction.event_id)
        if meaning.flag:
            outcome = await self.repository.flag_response(comparison.first.response_id, event=event)
            await self.repository.flag_response(comparison.second.response_id)
            return outcome
        verdict = meaning.verdict
        if verdict is None:
            return VoteOutcome.UNKNOWN_EMOJI
        voter = self.persons.key(reaction.platform, reaction.user)
        return await self.repository.record_comparison(
            comparison=comparison,
            voter=voter,
            emoji=verdict.emoji,
            rewards=verdict.rewards,
            event=event,
            daily_cap=self.daily_vote_cap,  # counted in the database: across every bot process
        )

    async def _on_reaction_removed(self, reaction: IncomingReaction, meaning: Meaning) -> VoteOutcome:
        verdict = meaning.verdict
        if meaning.reward is None and verdict is None:
            return VoteOutcome.UNKNOWN_EMOJI
        comparison = await self.repository.comparison_by_message(reaction.message_key)
        if comparison is not None:
            if verdict is None:
                return VoteOutcome.UNKNOWN_EMOJI
            return await self.repository.retract_comparison(
                comparison=comparison,
                voter=self.persons.key(reaction.platform, reaction.user),
                emoji=verdict.emoji,
                event=_event(reaction.platform, reaction.event_id),
            )
        if meaning.reward is None:
            return VoteOutcome.UNKNOWN_EMOJI
        target = await self.repository.response_by_message(reaction.message_key)
        if target is None:
            return VoteOutcome.UNKNOWN_RESPONSE
        return await self.repository.retract_vote(
            response_id=target.response_id,
            voter=self.persons.key(reaction.platform, reaction.user),
            emoji=meaning.name,
            event=_event(reaction.platform, reaction.event_id),
        )

    async def reconcile(
        self,
        *,
        platform: str,
        message_key: str,
        reactions: Iterable[tuple[str, str]],
        incomplete: Iterable[str] = (),
    ) -> Reconciled:
        """Make the stored votes on one answer match the (user, emoji) reactions it shows now.

        Used after downtime: reactions added while the bot was away become votes, votes
        whose reaction was removed are retracted. The adapter leaves out the bot's own.
        ``incomplete``: emoji whose list of people the platform cut short; none retracted.
        """
        reactions, incomplete = tuple(reactions), tuple(incomplete)
        # Each emoji shown is read once, however many people it lists.
        meanings = {emoji: self.read_reaction(emoji) for emoji in {*(e for _, e in reactions), *incomplete}}
        comparison = await self.repository.comparison_by_message(message_key)
        if comparison is not None:
            return await self._reconcile_comparison(
                platform=platform, comparison=comparison, reactions=reactions, incomplete=incomplete, meanings=meanings
            )
        target = await self.repository.response_by_message(message_key)
        if target is None:
            return Reconciled()
        present: dict[tuple[str, str], float] = {}
        flagged = False
        for user, emoji in reactions:
            meaning = meanings[emoji]
            flagged = flagged or meaning.flag
            if meaning.reward is not None:
                present[(self.persons.key(platform, user), meaning.name)] = meaning.reward
        stored = set(await self.repository.votes_on(target.response_id))
        added = retracted = 0
        for (voter, name), reward in present.items():
            if (voter, name) not in stored:
                outcome = await self.repository.record_vote(
                    response_id=target.response_id, voter=voter, emoji=name, reward=reward
                )
                added += outcome is VoteOutcome.RECORDED
        keep = {meanings[emoji].name for emoji in incomplete}
        for voter, name in stored - present.keys():
            if name in keep:
                continue
            outcome = await self.repository.retract_vote(response_id=target.response_id, voter=voter, emoji=name)
            retracted += outcome is VoteOutcome.RETRACTED
        if flagged and not target.flagged:
            await self.repository.flag_response(target.response_id)
        return Reconciled(added=added, retracted=retracted)

    async def _reconcile_comparison(
        self,
        *,
        platform: str,
        comparison: ComparisonRef,
        reactions: Iterable[tuple[str, str]],
        incomplete: Iterable[str],
        meanings: Mapping[str, Meaning],
    ) -> Reconciled:
        present: set[tuple[str, str]] = set()
        verdicts: dict[tuple[str, str], Verdict] = {}
        flagged = False
        for user, emoji in reactions:
            meaning = meanings[emoji]
            flagged = flagged or meaning.flag
            verdict = meaning.verdict
            if verdict is not None:
                key = (self.persons.key(platform, user), verdict.emoji)
                present.add(key)
                verdicts[key] = verdict
        # Every vote on candidate 0 of a comparison is one verdict.
        stored = set(await self.repository.votes_on(comparison.first.response_id))
        added = retracted = 0
        for voter, name in present - stored:
            verdict = verdicts[(voter, name)]
            outcome = await self.repository.record_comparison(
                comparison=comparison, voter=voter, emoji=name, rewards=verdict.rewards
            )
            added += outcome is VoteOutcome.RECORDED
        cut = (meanings[emoji].verdict for emoji in incomplete)
        keep = {verdict.emoji for verdict in cut if verdict is not None}
        for voter, name in stored - present:
            if name in keep:
                continue
            outcome = await self.repository.retract_comparison(comparison=comparison, voter=voter, emoji=name)
            retracted += outcome is VoteOutcome.RETRACTED
        if flagged and not comparison.first.flagged:
            await self.repository.flag_response(comparison.first.response_id)
            await self.repository.flag_response(comparison.second.response_id)
        return Reconciled(added=added, retracted=retracted)

    async def on_correction(self, correction: IncomingCorrection) -> int | None:
        """Store a person's better answer to one of the bot's answers; its id, or None."""
        text = correction.text.strip()
        if not text or len(text) > self.max_correction_chars:
            return None
        target = await self.repository.response_by_message(correction.message_key)
        if target is None:
            return None
        return await self.repository.record_correction(
            response_id=target.response_id,
            author=self.persons.key(correction.platform, correction.user),
            text=text,
            event=_event(correction.platform, correction.event_id),
        )


def _event(platform: str, event_id: str | None) -> tuple[str, str] | None:
    return (platform, event_id) if event_id else None
