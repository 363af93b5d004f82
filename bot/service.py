"""The platform-neutral core: prompts become stored answers, reactions become votes."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bot import stats
from bot.commands import AdminActions, Command, parse_command
from bot.comparison import COMPARE_REACTIONS, Verdict, render_comparison, split_compare_request, verdict_named
from bot.events import RATING_REACTIONS, IncomingCorrection, IncomingPrompt, IncomingReaction, Reply
from bot.feedback import EmojiTable, normalize_emoji
from bot.forgetting import Copies
from bot.generation import GenerationError, GenerationTimeout, Generator, GeneratorBusy, SamplingParams
from bot.limits import RateLimiter
from bot.metrics import Metrics
from storage.dialogue import render_prompt
from storage.identity import PersonKeys
from storage.repository import ComparisonRef, ForgetCounts, NewResponse, PendingPrompt, Repository, VoteOutcome

# VoteOutcome is part of the service's answer to a reaction: adapters import it from here.
__all__ = ["BotService", "Meaning", "NotStored", "PendingPrompt", "Reconciled", "VoteOutcome"]

log = logging.getLogger(__name__)

EMPTY_ANSWER = "…"
LATE_APOLOGY = "Sorry: I was down when you asked this, and it is too long ago to answer now. Please ask again."
NOT_STORED_APOLOGY = (
    "Sorry: I could not store an answer just now (my database refused the write). Please ask again later."
)
CHARTS_KEPT = 10
_FORGET_ME = re.compile(r"(?i)(?:please\s+)?forget\s+me[.!]?")


@dataclass(frozen=True)
class Meaning:
    """What one reaction stands for, decided once by :meth:`BotService.read_reaction`."""

    name: str  # the canonical name: what a vote row stores ("+1", "👍")
    reward: float | None  # from THUMBTUNE_EMOJI_REWARDS; None: not a rating
    verdict: Verdict | None  # what it says on a comparison; None: no verdict
    flag: bool  # THUMBTUNE_FLAG_EMOJI: never train on the answer

    @property
    def counts(self) -> bool:
        """A rating, a verdict or a flag: worth handing to the service at all."""
        return self.reward is not None or self.verdict is not None or self.flag


class BotService:
    def __init__(
        self,
        *,
        repository: Repository,
        generator: Generator,
        persons: PersonKeys,
        emoji: EmojiTable,
        sampling: SamplingParams,
        max_prompt_chars: int = 2000,
        history_turns: int = 4,
        rate_limiter: RateLimiter | None = None,
        daily_vote_cap: int = 0,
        flag_emoji: Collection[str] = (),
        allowed_channels: Collection[str] = (),
        admins: Collection[str] = (),
        shell_is_admin: bool = True,
        charts_dir: Path | None = None,
        compare: bool = False,
        challenger_share: float = 0.0,
        best_of: int = 1,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        copies: Copies | None = None,
    ) -> None:
        self.repository = repository
        self.metrics = metrics if metrics is not None else Metrics()
        self.generator = generator
        self.persons = persons
        self.emoji = emoji
        self.sampling = sampling
        self.max_prompt_chars = max_prompt_chars
        self.history_turns = history_turns
        self.rate_limiter = rate_limiter
        self.daily_vote_cap = daily_vote_cap
        self.flag_emoji = frozenset(normalize_emoji(name) for name in flag_emoji)
        self.allowed_channels = frozenset(allowed_channels)
        self.admins = frozenset(admins)
        self.shell_is_admin = shell_is_admin  # the person at the local shell runs the bot
        self.charts_dir = charts_dir
        self.compare = compare  # every answer is a comparison of two candidates
        self.challenger_share = challenger_share  # share of answers from the previous version
        self.best_of = best_of  # answers sampled where the current version's reward model picks one
        self.rng = rng or random.Random()
        self.copies = copies  # files made from the database that `forget me` must reach too
        self.admin_actions: AdminActions | None = None  # set by the running loop
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

    def channel_allowed(self, platform: str, channel: str) -> bool:
        """The optional allow-list: empty allows all; the local shell is always allowed."""
        return not self.allowed_channels or platform == "shell" or channel in self.allowed_channels

    def _outside_allow_list(self, prompt: IncomingPrompt) -> bool:
        if self.channel_allowed(prompt.platform, prompt.channel):
            return False
        log.debug("ignoring a prompt in %s channel %s (not in the allow-list)", prompt.platform, prompt.channel)
        return True

    async def on_prompt(self, prompt: IncomingPrompt, *, sampling: SamplingParams | None = None) -> Reply | None:
        """Answer a prompt and store it; None when the event was already handled (a retry).

        For a platform that acknowledges what it delivers, adapters use :meth:`take_prompt`
        and :meth:`answer_pending` instead, so nothing acknowledged is lost.
        """
        if prompt.event_id and not await self.repository.claim_event(prompt.platform, prompt.event_id):
            log.info("ignoring retried prompt event %s/%s", prompt.platform, prompt.event_id)
            return None
        if self._outside_allow_list(prompt):
            return None
        return await self._answer(prompt, sampling=sampling)

    # --- commit, then acknowledge: prompts stored as pending before they are answered ---
    async def take_prompt(self, prompt: IncomingPrompt, *, thread: str | None) -> PendingPrompt | None:
        """Store a prompt as pending (claiming its event) before the platform is told it arrived.

        ``thread``: where the answer goes, as the adapter names it (None: the adapter places
        it later, :meth:`place_pending`). None when the event was handled already (a retry)
        or the channel is not in the allow-list. Raises :class:`NotStored` when the database
        refuses the write (a full disk): then the prompt must not be acknowledged.
        """
        if self._outside_allow_list(prompt):
            return None
        try:
            pending = await self.repository.take_pending(
                platform=prompt.platform,
                channel=prompt.channel,
                thread=thread,
                user=prompt.user,
                author=self.persons.key(prompt.platform, prompt.user),
                text=prompt.text,
                conversation=prompt.conversation,
                event_id=prompt.event_id,
            )
        except sqlite3.Error as exc:
            log.error("cannot store a %s prompt (event %s): %s", prompt.platform, prompt.event_id, exc)
            raise NotStored(str(exc)) from exc
        if pending is None:
            log.info("ignoring retried prompt event %s/%s", prompt.platform, prompt.event_id)
        return pending

    async def place_pending(self, pending: PendingPrompt, *, thread: str, conversation: str | None) -> PendingPrompt:
        """The adapter made a place for the answer (Slack's /ask posts the question first)."""
        await self.repository.place_pending(pending.pending_id, thread=thread, conversation=conversation)
        return replace(pending, thread=thread, conversation=conversation)

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> Reply:
        """The reply to a pending prompt: generated and stored now, or the one stored before a restart.

        ``late``: too old to answer now (THUMBTUNE_PENDING_HOURS); an apology instead.
        A database that refuses to store the answer gets the person an apology, not silence.
        """
        if late:
            return Reply(LATE_APOLOGY, ok=False)
        if pending.prompt_id is not None:
            stored = await self._stored_reply(pending.prompt_id)
            if stored is not None:
                return stored
        prompt = IncomingPrompt(
            platform=pending.platform,
            channel=pending.channel,
            user=pending.user,
            text=pending.text,
            conversation=pending.conversation,
            event_id=pending.event_id,
        )
        try:
            return await self._answer(prompt, pending_id=pending.pending_id)
        except sqlite3.Error as exc:
            log.error("cannot store the answer to a %s prompt (event %s): %s", pending.platform, pending.event_id, exc)
            return Reply(NOT_STORED_APOLOGY, ok=False)

    async def pending_answered(self, pending: PendingPrompt) -> None:
        """The reply was posted (or the platform refused it for good): the prompt is no longer pending."""
        await self.repository.drop_pending(pending.pending_id)

    async def pending_prompts(self, platform: str) -> list[PendingPrompt]:
        """Prompts of ``platform`` taken but never answered (a crash or a stop came first), oldest first."""
        return await self.repository.pending_prompts(platform)

    async def _stored_reply(self, prompt_id: int) -> Reply | None:
        stored = await self.repository.stored_candidates(prompt_id)
        if stored is None or not stored[1]:
            return None
        mode, candidates = stored
        return _reply(
            [(candidate.text, candidate.model_version) for candidate in candidates],
            tuple(candidate.response_id for candidate in candidates),
            compare=mode == "compare",
        )

    async def _answer(
        self, prompt: IncomingPrompt, *, sampling: SamplingParams | None = None, pending_id: int | None = None
    ) -> Reply:
        """A command's result, a refusal, or an answer generated and stored (for ``pending_id``)."""
        text = prompt.text.strip()
        if _FORGET_ME.fullmatch(text):
            return await self.forget(prompt.platform, prompt.user)
        command = parse_command(text)
        if command is not None:
            return await self.run_command(command, platform=prompt.platform, user=prompt.user)
        self.metrics.prompts.labels(prompt.platform).inc()
        if self.rate_limiter is not None and prompt.platform != "shell":  # the local operator is trusted
            wait = self.rate_limiter.try_acquire(self.persons.key(prompt.platform, prompt.user))
            if wait > 0:
                self.metrics.refusals.labels("slow_down").inc()
                return Reply(f"Slow down a little, please: you can ask again in {math.ceil(wait)} s.", ok=False)
        compare, text = split_compare_request(text)
        compare = compare or self.compare
        if not text:
            return Reply("Ask me something: your message was empty.", ok=False)
        if len(text) > self.max_prompt_chars:
            return Reply(
                f"That message is {len(text):,} characters long; I can take up to "
                f"{self.max_prompt_chars:,}. Please shorten it.",
                ok=False,
            )
        params = sampling or self.sampling
        history = []
        if prompt.conversation and self.history_turns:
            turns = await self.repository.conversation_history(prompt.conversation, limit=self.history_turns)
            history = [(turn.user_text, turn.bot_text) for turn in turns]
        context = render_prompt(text, history)
        try:
            with self.metrics.generation_seconds.time():
                candidates, scores = await self._sample(context, params, compare=compare)
        except GenerationError as exc:
            log.warning("no answer for a %s prompt: %s", prompt.platform, exc, extra={"platform": prompt.platform})
            self.metrics.refusals.labels(_refusal(exc)).inc()
            return Reply(str(exc), ok=False)
        stored = await self.repository.record_answer(
            pending_id=pending_id,
            platform=prompt.platform,
            channel=prompt.channel,
            author=self.persons.key(prompt.platform, prompt.user),
            text=text,
            context=context,
            conversation=prompt.conversation,
            mode="compare" if compare else "single",
            responses=[
                NewResponse(
                    text=answer,
                    model_version=version,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_new_tokens=params.max_new_tokens,
                    score=scores[index] if scores is not None else None,
                )
                for index, (answer, version) in enumerate(candidates)
            ],
        )
        for _, version in candidates:
            self.metrics.answers.labels(str(version)).inc()
        return _reply(candidates, stored.response_ids, compare=compare)

    async def _sample(
        self, context: str, params: SamplingParams, *, compare: bool
    ) -> tuple[list[tuple[str, int]], list[float] | None]:
        """(text, model version) per candidate, candidate 0 first (the shown one: with a
        reward model, the one it prefers), and the reward model's scores when it ranked them.

        Champion vs challenger: with a share set and the previous version still loaded, a
        comparison pits the current version against the previous one (on a random side),
        and that share of single answers comes from the previous version.
        """
        previous = self.generator.previous_version if self.challenger_share > 0 else None
        if compare:
            # Exactly the two shown: an unshown third candidate would pair against them in training.
            params = replace(params, candidates=2)
            if previous is not None:
                one = replace(params, candidates=1)
                champion, challenger = await asyncio.gather(
                    self.generator.generate(context, one), self.generator.generate(context, one, version=previous)
                )
                sides = [(champion.texts[0], champion.model_version), (challenger.texts[0], challenger.model_version)]
                if self.rng.random() < 0.5:
                    sides.reverse()
                return sides, None
        version = (
            previous if previous is not None and not compare and self.rng.random() < self.challenger_share else None
        )
        if not compare and version is None and self.best_of > params.candidates and self.generator.ranks_candidates:
            # Best-of-n only where a reward model picks: under version 0 the extra answers would be wasted work.
            params = replace(params, candidates=self.best_of, rank=True)
        generation = await self.generator.generate(context, params, version=version)
        scores = list(generation.scores) if generation.scores is not None else None
        return [(text, generation.model_version) for text in generation.texts], scores

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

    async def answer_posted(self, response_id: int, message_key: str) -> None:
        """The adapter posted an answer: remember where, so reactions on it count."""
        await self.repository.bind_message(response_id, message_key)

    async def conversation_of(self, message_key: str) -> str | None:
        """The conversation of the answer posted as ``message_key`` (None if it is not one)."""
        return await self.repository.conversation_of_message(message_key)

    async def latest_answer_in(self, conversation: str) -> str | None:
        """Message key of the newest posted answer in a conversation (what a correction there means)."""
        return await self.repository.latest_answer_key(conversation)

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Remember a platform event that changes nothing stored; False when it was handled already."""
        return await self.repository.claim_event(platform, event_id)

    async def recent_answers(self, platform: str, *, since: float, limit: int) -> list[str]:
        """Message keys of the answers posted on ``platform`` since ``since``, newest first, at most ``limit``."""
        answers = await self.repository.posted_answers_since(platform, since, limit=limit, newest_first=True)
        return [key for _, key in answers]

    async def prompt_channels(self, platform: str, *, limit: int) -> list[str]:
        """The channels people asked in on ``platform`` (DMs included), the most recently used first."""
        return await self.repository.prompt_channels(platform, limit=limit)

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
        if await self._over_daily_cap(voter):
            return VoteOutcome.CAPPED
        return await self.repository.record_vote(
            response_id=target.response_id,
            voter=voter,
            emoji=meaning.name,
            reward=meaning.reward,
            event=event,
        )

    async def _over_daily_cap(self, voter: str) -> bool:
        """Whether this person has cast THUMBTUNE_DAILY_VOTE_CAP votes in the last 24 hours."""
        if not self.daily_vote_cap:
            return False
        return await self.repository.count_votes_by(voter, since=time.time() - 86_400) >= self.daily_vote_cap

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
        if await self._over_daily_cap(voter):
            return VoteOutcome.CAPPED
        return await self.repository.record_comparison(
            comparison=comparison, voter=voter, emoji=verdict.emoji, rewards=verdict.rewards, event=event
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
        comparison = await self.repository.comparison_by_message(message_key)
        if comparison is not None:
            return await self._reconcile_comparison(
                platform=platform, comparison=comparison, reactions=reactions, incomplete=incomplete
            )
        target = await self.repository.response_by_message(message_key)
        if target is None:
            return Reconciled()
        present: dict[tuple[str, str], float] = {}
        flagged = False
        for user, emoji in reactions:
            meaning = self.read_reaction(emoji)
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
        keep = {self.read_reaction(emoji).name for emoji in incomplete}
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
    ) -> Reconciled:
        present: set[tuple[str, str]] = set()
        verdicts: dict[tuple[str, str], Verdict] = {}
        flagged = False
        for user, emoji in reactions:
            meaning = self.read_reaction(emoji)
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
        cut = (self.read_reaction(emoji).verdict for emoji in incomplete)
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
        if not text or len(text) > self.max_prompt_chars:
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


class NotStored(Exception):
    """The database refused to store what a person sent (a full disk): do not acknowledge it."""


def _refusal(exc: GenerationError) -> str:
    """The metrics' name for why the generator gave no answer."""
    if isinstance(exc, GeneratorBusy):
        return "busy"
    return "timeout" if isinstance(exc, GenerationTimeout) else "failed"


def _reply(candidates: list[tuple[str, int]], response_ids: tuple[int, ...], *, compare: bool) -> Reply:
    """The reply that shows stored candidates: one answer, or a comparison of the first two."""
    if compare:
        (first, first_version), (second, second_version) = candidates[:2]
        return Reply(
            text=render_comparison(first or EMPTY_ANSWER, second or EMPTY_ANSWER),
            response_ids=response_ids,
            model_version=first_version,
            reactions=COMPARE_REACTIONS,
            compare=True,
            versions=(first_version, second_version),
        )
    answer, version = candidates[0]
    return Reply(
        text=answer or EMPTY_ANSWER,
        response_ids=response_ids,
        model_version=version,
        reactions=RATING_REACTIONS,
        versions=(version,),
    )


@dataclass(frozen=True)
class Reconciled:
    added: int = 0
    retracted: int = 0


def _keep_newest(folder: Path, pattern: str, *, keep: int) -> None:
    """Charts are posted right away; keep a few for the operator and delete the rest."""
    for old in sorted(folder.glob(pattern), reverse=True)[keep:]:
        old.unlink(missing_ok=True)


def _event(platform: str, event_id: str | None) -> tuple[str, str] | None:
    return (platform, event_id) if event_id else None


def _counted(counts: ForgetCounts) -> str:
    """The numbers of a forget, for the log (never the texts)."""
    return (
        f"{counts.prompts} prompt(s), {counts.votes} vote(s), {counts.corrections} correction(s), "
        f"{counts.contexts} other dialogue(s) rewritten"
    )
