"""The platform-neutral core, as one façade over its parts: prompts become stored answers
(bot.answers), reactions and corrections become votes (bot.votes), replies become implicit
signals (bot.implicit), and chat commands run (bot.commands). Adapters talk to
:class:`BotService` only; bot.app composes the parts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from bot.answers import Answers, NotStored
from bot.commands import Command, Commands
from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, IncomingReply, Reply
from bot.generation import SamplingParams
from bot.implicit import ImplicitSignals
from bot.metrics import Metrics
from bot.votes import Meaning, Reconciled, Votes
from storage.identity import PersonKeys
from storage.repository import PendingPrompt, VoteOutcome

# What adapters import from here, whichever part it comes from.
__all__ = ["BotService", "Meaning", "NotStored", "PendingPrompt", "Reconciled", "VoteOutcome"]


class BotService:
    """What a platform adapter may ask of the bot; each call goes to the part that does it."""

    def __init__(
        self, *, answers: Answers, votes: Votes, commands: Commands, implicit: ImplicitSignals | None = None
    ) -> None:
        self.answers, self.votes, self.commands = answers, votes, commands
        self.implicit = implicit  # THUMBTUNE_IMPLICIT=off: None, and nothing beyond reactions is read

    @property
    def metrics(self) -> Metrics:
        return self.answers.metrics

    @property
    def persons(self) -> PersonKeys:
        return self.answers.persons

    @property
    def serving_version(self) -> int:
        """The model version answering now."""
        return self.answers.generator.version

    # --- prompts and answers (bot.answers) ------------------------------------------
    def channel_allowed(self, platform: str, channel: str) -> bool:
        return self.answers.channel_allowed(platform, channel)

    async def on_prompt(self, prompt: IncomingPrompt, *, sampling: SamplingParams | None = None) -> Reply | None:
        return await self.answers.on_prompt(prompt, sampling=sampling)

    async def take_prompt(self, prompt: IncomingPrompt, *, thread: str | None) -> PendingPrompt | None:
        return await self.answers.take_prompt(prompt, thread=thread)

    async def place_pending(self, pending: PendingPrompt, *, thread: str, conversation: str | None) -> PendingPrompt:
        return await self.answers.place_pending(pending, thread=thread, conversation=conversation)

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> Reply:
        return await self.answers.answer_pending(pending, late=late)

    async def pending_answered(self, pending: PendingPrompt) -> None:
        await self.answers.pending_answered(pending)

    async def pending_prompts(self, platform: str) -> list[PendingPrompt]:
        return await self.answers.pending_prompts(platform)

    async def answer_posted(self, response_id: int, message_key: str) -> None:
        await self.answers.answer_posted(response_id, message_key)

    async def conversation_of(self, message_key: str) -> str | None:
        return await self.answers.conversation_of(message_key)

    async def latest_answer_in(self, conversation: str) -> str | None:
        return await self.answers.latest_answer_in(conversation)

    async def claim_event(self, platform: str, event_id: str) -> bool:
        return await self.answers.claim_event(platform, event_id)

    async def recent_answers(self, platform: str, *, since: float, limit: int) -> list[str]:
        return await self.answers.recent_answers(platform, since=since, limit=limit)

    async def prompt_channels(self, platform: str, *, limit: int) -> list[str]:
        return await self.answers.prompt_channels(platform, limit=limit)

    # --- reactions and corrections (bot.votes) --------------------------------------
    def read_reaction(self, emoji: str) -> Meaning:
        return self.votes.read_reaction(emoji)

    def is_reaction_emoji(self, emoji: str) -> bool:
        return self.votes.is_reaction_emoji(emoji)

    async def on_reaction(self, reaction: IncomingReaction) -> VoteOutcome:
        return await self.votes.on_reaction(reaction)

    async def on_reaction_removed(self, reaction: IncomingReaction) -> VoteOutcome:
        return await self.votes.on_reaction_removed(reaction)

    @asynccontextmanager
    async def reconciling(self, message_key: str) -> AsyncIterator[None]:
        async with self.votes.reconciling(message_key):
            yield

    async def reconcile(
        self,
        *,
        platform: str,
        message_key: str,
        reactions: Iterable[tuple[str, str]],
        incomplete: Iterable[str] = (),
    ) -> Reconciled:
        return await self.votes.reconcile(
            platform=platform, message_key=message_key, reactions=reactions, incomplete=incomplete
        )

    async def on_correction(self, correction: IncomingCorrection) -> int | None:
        return await self.votes.on_correction(correction)

    # --- implicit feedback (bot.implicit) ------------------------------------------
    @property
    def reads_replies(self) -> bool:
        """Whether messages that do not address the bot are worth handing over (THUMBTUNE_IMPLICIT)."""
        return self.implicit is not None

    async def on_reply(self, reply: IncomingReply) -> VoteOutcome | None:
        """A message in a conversation that is not a prompt; None when nothing was read from it."""
        return await self.implicit.on_reply(reply) if self.implicit is not None else None

    # --- commands (bot.commands) ----------------------------------------------------
    def is_admin(self, platform: str, user: str) -> bool:
        return self.commands.is_admin(platform, user)

    async def run_command(self, command: Command, *, platform: str, user: str) -> Reply:
        return await self.commands.run_command(command, platform=platform, user=user)

    async def forget(self, platform: str, user: str) -> Reply:
        return await self.commands.forget(platform, user)
