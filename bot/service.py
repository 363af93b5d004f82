"""The platform-neutral core: prompts become stored answers, reactions become votes."""

from __future__ import annotations

import logging

from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, Reply
from bot.feedback import EmojiTable, normalize_emoji
from bot.generation import GenerationError, Generator, SamplingParams
from storage.identity import PersonKeys
from storage.repository import NewResponse, Repository, VoteOutcome
from trainer.dialogue import render_prompt

log = logging.getLogger(__name__)

EMPTY_ANSWER = "…"


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
    ) -> None:
        self.repository = repository
        self.generator = generator
        self.persons = persons
        self.emoji = emoji
        self.sampling = sampling
        self.max_prompt_chars = max_prompt_chars
        self.history_turns = history_turns

    async def on_prompt(self, prompt: IncomingPrompt, *, sampling: SamplingParams | None = None) -> Reply | None:
        """Answer a prompt and store it; None when the event was already handled (a retry)."""
        if prompt.event_id and not await self.repository.claim_event(prompt.platform, prompt.event_id):
            log.info("ignoring retried prompt event %s/%s", prompt.platform, prompt.event_id)
            return None
        text = prompt.text.strip()
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
            generation = await self.generator.generate(context, params)
        except GenerationError as exc:
            log.warning("no answer for a %s prompt: %s", prompt.platform, exc)
            return Reply(str(exc), ok=False)
        stored = await self.repository.record_answer(
            platform=prompt.platform,
            channel=prompt.channel,
            author=self.persons.key(prompt.platform, prompt.user),
            text=text,
            context=context,
            conversation=prompt.conversation,
            responses=[
                NewResponse(
                    text=answer,
                    model_version=generation.model_version,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_new_tokens=params.max_new_tokens,
                )
                for answer in generation.texts
            ],
        )
        return Reply(
            text=generation.texts[0] or EMPTY_ANSWER,
            response_ids=stored.response_ids,
            model_version=generation.model_version,
        )

    async def answer_posted(self, response_id: int, message_key: str) -> None:
        """The adapter posted an answer: remember where, so reactions on it count."""
        await self.repository.bind_message(response_id, message_key)

    async def conversation_of(self, message_key: str) -> str | None:
        """The conversation of the answer posted as ``message_key`` (None if it is not one)."""
        return await self.repository.conversation_of_message(message_key)

    async def on_reaction(self, reaction: IncomingReaction) -> VoteOutcome:
        reward = self.emoji.reward(reaction.emoji)
        if reward is None:
            return VoteOutcome.UNKNOWN_EMOJI
        target = await self.repository.response_by_message(reaction.message_key)
        if target is None:
            return VoteOutcome.UNKNOWN_RESPONSE
        return await self.repository.record_vote(
            response_id=target.response_id,
            voter=self.persons.key(reaction.platform, reaction.user),
            emoji=normalize_emoji(reaction.emoji),
            reward=reward,
            event=_event(reaction.platform, reaction.event_id),
        )

    async def on_reaction_removed(self, reaction: IncomingReaction) -> VoteOutcome:
        if reaction.emoji not in self.emoji:
            return VoteOutcome.UNKNOWN_EMOJI
        target = await self.repository.response_by_message(reaction.message_key)
        if target is None:
            return VoteOutcome.UNKNOWN_RESPONSE
        return await self.repository.retract_vote(
            response_id=target.response_id,
            voter=self.persons.key(reaction.platform, reaction.user),
            emoji=normalize_emoji(reaction.emoji),
            event=_event(reaction.platform, reaction.event_id),
        )

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


def _event(platform: str, event_id: str | None) -> tuple[str, str] | None:
    return (platform, event_id) if event_id else None
