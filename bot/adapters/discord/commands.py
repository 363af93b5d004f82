"""The bot's slash commands: ``/ask``, in a ``CommandTree`` of the client's, registered when it connects.

``/ask PROMPT`` is stored as pending, deferred at once (Discord allows 3 s), answered with
a follow-up that quotes the question. A test server (``THUMBTUNE_DISCORD_GUILD_ID``) gets
the commands at once; global commands can take a while to show.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot.adapters.base import InFlight
from bot.adapters.discord.listeners import NOT_TAKEN, Listeners
from bot.adapters.discord.payloads import PLATFORM, failure, files, fit, quote
from bot.adapters.discord.replies import Replies
from bot.events import IncomingPrompt, shown_text
from bot.service import BotService, NotStored

log = logging.getLogger(__name__)

ASK_DESCRIPTION = "Ask thumbtune something; rate the answer with 👍 or 👎."


def add_ask(tree: app_commands.CommandTree, answer: Callable[[discord.Interaction, str], Awaitable[None]]) -> None:
    """Put ``/ask PROMPT`` in ``tree``; ``answer`` answers each use of it."""

    @tree.command(name="ask", description=ASK_DESCRIPTION)
    @app_commands.describe(prompt="What you want to ask")
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        await answer(interaction, prompt)


class Commands:
    """The client's command tree with ``/ask`` in it, what ``/ask`` does, and the commands' registration."""

    def __init__(
        self,
        client: discord.Client,
        service: BotService,
        *,
        guild_id: int | None,
        listeners: Listeners,
        replies: Replies,
        in_flight: InFlight,
    ) -> None:
        self.service = service
        self.guild_id = guild_id
        self.listeners = listeners
        self.replies = replies
        self.in_flight = in_flight
        self.tree = app_commands.CommandTree(client)
        self.tree.error(self._on_error)
        add_ask(self.tree, self.ask)

    async def ask(self, interaction: discord.Interaction, prompt: str) -> None:
        """/ask: store it, defer at once (Discord allows 3 s), generate, answer with a follow-up."""
        channel_id = interaction.channel_id or 0
        channel = interaction.channel
        try:
            pending = await self.service.take_prompt(
                IncomingPrompt(
                    platform=PLATFORM,
                    channel=str(channel_id),
                    user=str(interaction.user.id),
                    text=prompt,
                    conversation=await self.listeners.conversation(
                        channel_id, channel, root=interaction.id, replied=None
                    ),
                    event_id=f"interaction:{interaction.id}",
                ),
                thread=None,  # answered as a follow-up; after a restart, in the channel with the question quoted
            )
        except NotStored:
            await interaction.response.send_message(NOT_TAKEN, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        if pending is None:
            await interaction.delete_original_response()
            return
        with self.in_flight.holding():
            reply = await self.service.answer_pending(pending)
            posted = await interaction.followup.send(
                fit(f"> {quote(prompt)}\n{shown_text(reply)}"), wait=True, files=files(reply)
            )
            await self.replies.offer_rating(reply, channel_id=channel_id, message_id=posted.id)
            await self.service.pending_answered(pending)

    async def register(self) -> None:
        """Register the commands with Discord: in the test server when one is set, else globally."""
        guild = discord.Object(id=self.guild_id) if self.guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        try:
            commands = await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            # Mentions and DMs still work without the command, so keep running.
            log.error(
                "could not register /ask (%s %s); invite the bot with the applications.commands scope%s",
                exc.status,
                exc.text or "",
                " and check THUMBTUNE_DISCORD_GUILD_ID" if guild is not None else "",
            )
            return
        where = f"in server {self.guild_id}" if guild is not None else "globally"
        log.info("registered %s %s", ", ".join(f"/{command.name}" for command in commands), where)
        if guild is not None:
            await self._drop_global_copies({command.name for command in commands})

    async def _drop_global_copies(self, names: set[str]) -> None:
        """Registered in one server now: remove the global commands of the same name an earlier
        run registered, or that server would list each command twice."""
        try:
            for command in await self.tree.fetch_commands():
                if command.name in names:
                    await command.delete()
                    log.info(
                        "removed the global /%s: THUMBTUNE_DISCORD_GUILD_ID registers it in server %s only",
                        command.name,
                        self.guild_id,
                    )
        except discord.HTTPException as exc:
            log.warning("could not check for a global /ask to remove (%s); it may show twice", failure(exc))

    async def _on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        name = interaction.command.name if interaction.command else "?"
        log.error(
            "/%s failed (interaction %s in channel %s); the bot goes on",
            name,
            interaction.id,
            interaction.channel_id,
            exc_info=error,
        )
        with contextlib.suppress(discord.HTTPException):  # it may have expired; the log has the details
            await interaction.followup.send("Sorry, something went wrong answering that.", ephemeral=True)
