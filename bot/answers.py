"""Answers: prompts become stored answers, generated under one answer policy.

The policy (:meth:`Answers._sample`): a comparison shows exactly two candidates (the
current version against the previous one when a challenger share is set); a share of
single answers comes from the previous version; otherwise, where the current version's
reward model ranks, the best of ``best_of`` samples is shown, or with
THUMBTUNE_COMPARE=auto the two it is least sure of, as a comparison
(:class:`bot.comparison.AutoComparisons`). A platform that
acknowledges what it delivers stores a prompt as pending first (commit, then acknowledge).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, replace

from bot.commands import FORGET_ME, Commands, parse_command
from bot.comparison import COMPARE_REACTIONS, AutoComparisons, render_comparison, split_compare_request
from bot.events import RATING_REACTIONS, IncomingPrompt, Reply
from bot.generation import Engine, EngineUnavailable, GenerationError, GenerationTimeout, GeneratorBusy, SamplingParams
from bot.implicit import ImplicitSignals
from bot.limits import RateLimiter
from bot.metrics import Metrics
from storage.dialogue import render_prompt
from storage.identity import PersonKeys
from storage.repository import NewResponse, PendingPrompt, Repository

log = logging.getLogger(__name__)

EMPTY_ANSWER = "…"
LATE_APOLOGY = "Sorry: I was down when you asked this, and it is too long ago to answer now. Please ask again."
NOT_STORED_APOLOGY = (
    "Sorry: I could not store an answer just now (my database refused the write). Please ask again later."
)


class Answers:
    def __init__(  # noqa: PLR0913  the answer policy's collaborators and settings, composed once in bot.app
        self,
        *,
        repository: Repository,
        generator: Engine,
        persons: PersonKeys,
        sampling: SamplingParams,
        commands: Commands,
        metrics: Metrics,
        max_prompt_chars: int = 2000,
        history_turns: int = 4,
        rate_limiter: RateLimiter | None = None,
        allowed_channels: Collection[str] = (),
        compare: bool = False,
        auto_compare: AutoComparisons | None = None,
        challenger_share: float = 0.0,
        best_of: int = 1,
        implicit: ImplicitSignals | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.repository = repository
        self.generator = generator
        self.persons = persons
        self.sampling = sampling
        self.commands = commands  # a message that is a command (or `forget me`) goes there
        self.metrics = metrics
        self.max_prompt_chars = max_prompt_chars
        self.history_turns = history_turns
        self.rate_limiter = rate_limiter
        self.allowed_channels = frozenset(allowed_channels)
        self.compare = compare  # every answer is a comparison of two candidates
        self.auto_compare = auto_compare  # THUMBTUNE_COMPARE=auto: comparisons where the reward model is unsure
        self.challenger_share = challenger_share  # share of answers from the previous version
        self.best_of = best_of  # answers sampled where the current version's reward model picks one
        self.implicit = implicit  # reads a prompt against the answer its author saw last; None: off
        self.rng = rng or random.Random()

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
        if FORGET_ME.fullmatch(text):
            return await self.commands.forget(prompt.platform, prompt.user)
        command = parse_command(text)
        if command is not None:
            return await self.commands.run_command(command, platform=prompt.platform, user=prompt.user)
        self.metrics.prompts.labels(prompt.platform).inc()
        too_fast = self._over_the_rate(prompt)
        if too_fast is not None:
            return too_fast
        asked, text = split_compare_request(text)
        compare = asked or self.compare
        refused = self._refused_text(text)
        if refused is not None:
            return refused
        # Read against the answer its author saw last (a retry, a rephrase, thanks, a complaint).
        retry = await self.implicit.before_answer(prompt, text) if self.implicit is not None else None
        params = sampling or self.sampling
        history = []
        if prompt.conversation and self.history_turns:
            turns = await self.repository.conversation_history(prompt.conversation, limit=self.history_turns)
            history = [(turn.user_text, turn.bot_text) for turn in turns]
        context = render_prompt(text, history)
        if compare:
            self.metrics.comparisons.labels("asked" if asked else "always").inc()
        try:
            with self.metrics.generation_seconds.time():
                drawn = await self._sample(context, params, compare=compare)
            candidates, scores, compare = drawn.candidates, drawn.scores, drawn.compare
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
        if retry is not None and self.implicit is not None and not compare:
            await self.implicit.after_answer(retry, stored.response_ids[0], platform=prompt.platform)
        return _reply(candidates, stored.response_ids, compare=compare)

    def _refused_text(self, text: str) -> Reply | None:
        """The refusal for an empty or too long question; None to go on."""
        if not text:
            return Reply("Ask me something: your message was empty.", ok=False)
        if len(text) > self.max_prompt_chars:
            return Reply(
                f"That message is {len(text):,} characters long; I can take up to "
                f"{self.max_prompt_chars:,}. Please shorten it.",
                ok=False,
            )
        return None

    def _over_the_rate(self, prompt: IncomingPrompt) -> Reply | None:
        """The refusal for an asker over the rate limit (it counts this prompt); None to go on."""
        if self.rate_limiter is None or prompt.platform == "shell":  # the local operator is trusted
            return None
        wait = self.rate_limiter.try_acquire(self.persons.key(prompt.platform, prompt.user))
        if wait <= 0:
            return None
        self.metrics.refusals.labels("slow_down").inc()
        return Reply(f"Slow down a little, please: you can ask again in {math.ceil(wait)} s.", ok=False)

    async def _sample(self, context: str, params: SamplingParams, *, compare: bool) -> _Drawn:
        """(text, model version) per candidate, candidate 0 first (the shown one: with a
        reward model, the one it prefers), the reward model's scores when it ranked them, and
        whether they are shown as a comparison.

        Champion vs challenger: with a share set and the previous version still loaded, a
        comparison pits the current version against the previous one (on a random side),
        and that share of single answers comes from the previous version. With
        THUMBTUNE_COMPARE=auto, an answer of the current version may become a comparison
        (:meth:`_maybe_compare`).
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
                return _Drawn(sides, None, compare=True)
        version = (
            previous if previous is not None and not compare and self.rng.random() < self.challenger_share else None
        )
        if not compare and version is None and self.auto_compare is not None:
            drawn = await self._maybe_compare(context, params, self.auto_compare)
            if drawn is not None:
                return drawn
        if not compare and version is None and self.best_of > params.candidates and self.generator.ranks_candidates:
            # Best-of-n only where a reward model picks: under version 0 the extra answers would be wasted work.
            params = replace(params, candidates=self.best_of, rank=True)
        generation = await self.generator.generate(context, params, version=version)
        scores = list(generation.scores) if generation.scores is not None else None
        return _Drawn([(text, generation.model_version) for text in generation.texts], scores, compare=compare)

    async def _maybe_compare(self, context: str, params: SamplingParams, auto: AutoComparisons) -> _Drawn | None:
        """THUMBTUNE_COMPARE=auto: best-of-n (at least 2) ranked by the current version's reward
        model; the two candidates it is least sure of become a comparison where ``auto`` says
        so. A version with no ranking reward model is compared at random, at the share (None:
        answer as usual)."""
        if not self.generator.ranks_candidates:
            if not auto.at_random():
                return None
            self.metrics.comparisons.labels("random").inc()
            return await self._sample(context, params, compare=True)
        ranked = replace(params, candidates=max(self.best_of, params.candidates, 2), rank=True)
        generation = await self.generator.generate(context, ranked)
        candidates = [(text, generation.model_version) for text in generation.texts]
        if generation.scores is None:  # a new version without a reward model went live meanwhile
            return _Drawn(candidates, None, compare=False)
        scores = list(generation.scores)
        pair = auto.choose(scores)
        if pair is None:
            return _Drawn(candidates, scores, compare=False)
        self.metrics.comparisons.labels("unsure").inc()
        shown = list(pair)
        if self.rng.random() < 0.5:  # sides at random: the head's favourite is not always 1️⃣
            shown.reverse()
        # Exactly the two shown are stored: an unshown third would pair against them in training.
        return _Drawn([candidates[i] for i in shown], [scores[i] for i in shown], compare=True)

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


@dataclass(frozen=True)
class _Drawn:
    """What :meth:`Answers._sample` drew: candidates (text, version), the reward model's scores
    when it ranked them, and whether they are shown as a comparison."""

    candidates: list[tuple[str, int]]
    scores: list[float] | None
    compare: bool


class NotStored(Exception):
    """The database refused to store what a person sent (a full disk): do not acknowledge it."""


def _refusal(exc: GenerationError) -> str:
    """The metrics' name for why the generator gave no answer."""
    if isinstance(exc, EngineUnavailable):
        return "engine_down"
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
