"""The Discord client: a discord.py ``Client`` on the lifecycle every platform shares.

The unmodified discord.py client does all Discord I/O (REST, gateway, rate limits,
reconnects); :class:`DiscordBot` composes this package's parts once, hands them its
events, and supplies the gateway to :class:`bot.adapters.base.Platform`. Each time it
connects, the bot answers what its last run left pending, catches up on votes it missed
(:mod:`bot.catchup`), then answers the mentions and DMs people sent while it was down. On
:meth:`DiscordBot.stop` the answers in flight finish within ``THUMBTUNE_SHUTDOWN_GRACE_S``;
prompts that arrive meanwhile are stored and answered by the next run.

With ``THUMBTUNE_DISCORD_SHARDS`` the client is a :class:`ShardedDiscordBot` (discord.py's
``AutoShardedClient`` on the given shard ids and count): several processes on one database
each serve the servers of their shards, and catch up on those only (:mod:`.shards`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any, ClassVar

import discord

from bot.adapters.base import Lifecycle, Platform, StartupError
from bot.adapters.discord.catchup import MAX_VOTERS_PER_EMOJI, CatchUp
from bot.adapters.discord.commands import Commands
from bot.adapters.discord.listeners import Listeners
from bot.adapters.discord.payloads import PLATFORM, describe
from bot.adapters.discord.permissions import invite_url, required_intents
from bot.adapters.discord.replies import Replies
from bot.adapters.discord.shards import ShardScope
from bot.catchup import ShownReactions
from bot.service import BotService
from bot.settings import Settings, default_of
from bot.shards import Shards
from storage.repository import PendingPrompt

log = logging.getLogger(__name__)

INTENTS_HELP = (
    "Discord refused the gateway intents the bot asked for. In the Discord developer portal "
    "(https://discord.com/developers/applications) open your application, go to Bot -> "
    "Privileged Gateway Intents and check the list; thumbtune needs no privileged intent, "
    "only the default ones: Guilds, Guild Messages, Direct Messages, Guild Message Reactions "
    "and Direct Message Reactions. An app that reaches 10,000 users must apply for any "
    "privileged intent it uses."
)
MISSING_TOKEN = "the discord adapter needs DISCORD_TOKEN (see docs/discord.md)"
TOKEN_HELP = (
    "Discord rejected DISCORD_TOKEN. In the developer portal open your application -> Bot -> "
    "Reset Token, and put the new token in DISCORD_TOKEN (in .env or the environment)."
)


class DiscordStartupError(StartupError):
    """Discord refused to start the bot; the message says what to change, fit for a person."""


class DiscordBot(discord.Client, Platform[discord.Message]):
    """A discord.py client that answers through :class:`BotService` and records votes."""

    platform: ClassVar[str] = PLATFORM

    def __init__(  # noqa: PLR0913  one keyword per Discord setting, each defaulted from the settings
        self,
        *,
        service: BotService,
        token: str,
        correction_prefix: str = default_of("correction_prefix"),
        guild_id: int | None = None,
        guild_ready_timeout: float = 2.0,
        reconcile_hours: float = default_of("reconcile_hours"),
        reconcile_max_messages: int = default_of("reconcile_max_messages"),
        max_voters_per_emoji: int = MAX_VOTERS_PER_EMOJI,
        announce_channel: str | None = None,
        pending_hours: float = default_of("pending_hours"),
        shutdown_grace_s: float = default_of("shutdown_grace_s"),
        shards: Shards | None = None,
    ) -> None:
        sharding: dict[str, Any] = {}
        if shards is not None:
            if not isinstance(self, discord.AutoShardedClient):
                raise TypeError("a client on some shards is a ShardedDiscordBot (DiscordBot.from_settings picks it)")
            sharding = {"shard_ids": list(shards.ids), "shard_count": shards.count}
        super().__init__(
            intents=required_intents(),
            # Generated text must never ping anyone; only the asker gets the reply ping.
            allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True),
            # Votes use raw events, so no feature here depends on the message cache.
            max_messages=None,
            guild_ready_timeout=guild_ready_timeout,
            **sharding,
        )
        lifecycle = Lifecycle(
            reconcile_hours=reconcile_hours,
            reconcile_max_messages=reconcile_max_messages,
            pending_hours=pending_hours,
            shutdown_grace_s=shutdown_grace_s,
        )
        # discord.Client does not call on along the MRO: the platform template is set up here.
        Platform.__init__(self, service, lifecycle=lifecycle, correction_prefix=correction_prefix)
        self._login_token = token  # never logged, never in a repr
        self.guild_id = guild_id
        self.announce_channel = announce_channel
        self.scope = ShardScope(self, shards)  # the shards it runs (discord.py's `shards` is another thing)
        self.replies = Replies(self, service, scope=self.scope)
        self.listeners = Listeners(
            self,
            service,
            replies=self.replies,
            in_flight=self.in_flight,
            correction=self.correction,
            draining=self.is_draining,
        )
        self.catching_up = CatchUp(
            self,
            service,
            listeners=self.listeners,
            correction=self.correction,
            scope=self.scope,
            max_voters_per_emoji=max_voters_per_emoji,
        )
        self.commands = Commands(
            self,
            service,
            guild_id=guild_id,
            listeners=self.listeners,
            replies=self.replies,
            in_flight=self.in_flight,
        )

    # --- the adapter contract -------------------------------------------------------
    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        if settings.discord_token is None:  # say so before the model loads
            raise StartupError(MISSING_TOKEN, exit_code=2)

    @classmethod
    def from_settings(cls, service: BotService, settings: Settings) -> DiscordBot:
        cls.check_settings(settings)
        assert settings.discord_token is not None  # checked just above
        shards = settings.discord_shards
        if shards is not None and not shards.every_shard and settings.database_url is None:
            log.warning(
                "THUMBTUNE_DISCORD_SHARDS=%s runs some of the shards, but a SQLite file serves one process: "
                "the processes on the other shards need the same database (THUMBTUNE_DATABASE_URL)",
                shards,
            )
        chosen = cls if shards is None else ShardedDiscordBot
        return chosen(
            service=service,
            token=settings.discord_token.get_secret_value(),
            correction_prefix=settings.correction_prefix,
            guild_id=settings.discord_guild_id,
            announce_channel=settings.announce_channel,
            shards=shards,
            **dataclasses.asdict(Lifecycle.from_settings(settings)),
        )

    def connected(self) -> bool | None:
        """Up when discord.py holds a ready gateway session."""
        return self.is_ready() and not self.is_closed()

    async def announce(self, text: str) -> None:
        """Post a message of the bot's own in THUMBTUNE_ANNOUNCE_CHANNEL (when it is set)."""
        await self.replies.announce(text, channel=self.announce_channel)

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        await self.replies.answer_pending(pending, late=late)

    # --- the gateway ------------------------------------------------------------------
    async def connect_and_serve(self) -> None:
        """Log in and run until closed; refusals at start-up become :class:`DiscordStartupError`."""
        try:
            await self.start(self._login_token)
        except discord.LoginFailure:
            raise DiscordStartupError(TOKEN_HELP) from None
        except discord.PrivilegedIntentsRequired:
            raise DiscordStartupError(INTENTS_HELP) from None
        except discord.ConnectionClosed as exc:
            if exc.code == 4004:  # authentication failed on the gateway
                raise DiscordStartupError(TOKEN_HELP) from None
            if exc.code in (4013, 4014):  # invalid / disallowed intents
                raise DiscordStartupError(INTENTS_HELP) from None
            raise
        finally:
            if not self.is_closed():
                await self.close()

    async def setup_hook(self) -> None:
        if self.scope.direct_messages:  # one process registers /ask: the one on shard 0 (or the only one)
            await self.commands.register()

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info(
            "connected to Discord as %s (id %s) in %d servers%s",
            self.user,
            self.user.id,
            len(self.guilds),
            "" if self.scope.shards is None else f" on shards {self.scope.shards}",
        )
        if self.application_id is not None:
            log.info("invite it to a server with %s", invite_url(self.application_id))
        # READY comes again after a session could not be resumed: events were lost, so catch up again.
        self.connected_now()

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        # While closing, discord.py still hands over events it had already read; their
        # handlers could not answer any more (the HTTP session is closed) and, once the
        # client has let go of its event loop, could not even be scheduled.
        if self.is_closed():
            log.debug("closing: %s event dropped", event)
            return
        super().dispatch(event, *args, **kwargs)

    async def close(self) -> None:
        await self.stop_catching_up()
        await self.in_flight.cancel()
        await super().close()

    async def stop(self) -> None:
        """Finish the answers in flight (within the grace; the rest stay pending), then close."""
        self.draining = True
        if not self.is_closed():
            await self.drain()
        await self.close()

    # --- events (discord.py runs each handler in a task of its own) --------------------
    async def on_message(self, message: discord.Message) -> None:
        await self.listeners.on_message(message)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.listeners.on_raw_reaction_add(payload)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self.listeners.on_raw_reaction_remove(payload)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py calls this from inside its own try/except: log and keep serving.
        log.exception("Discord %s handler failed (%s); the bot goes on", event_method, describe(args))

    # --- catching up after downtime -----------------------------------------------
    async def missed_since(self, *, hours: float, most: int) -> list[tuple[float, discord.Message, str]]:
        return await self.catching_up.missed_since(hours=hours, most=most)

    async def take_missed(self, message: discord.Message) -> Coroutine[Any, Any, None] | None:
        return await self.catching_up.take_missed(message)

    async def catches_up_on(self, message_key: str) -> bool:
        return await self.catching_up.catches_up_on(message_key)

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        return await self.catching_up.reactions_on(message_key)


class ShardedDiscordBot(DiscordBot, discord.AutoShardedClient):
    """The bot on some of its gateway shards (``shards``): discord.py's ``AutoShardedClient``
    opens one connection per shard id; Discord sends each the events of its servers (DMs
    on shard 0)."""

    async def on_shard_ready(self, shard_id: int) -> None:
        # After the first READY of every shard (on_ready), a shard that comes back without
        # resuming lost its events: catch up again (at start the on_ready does it, once all are in).
        if self._catching_up is not None:
            log.info("shard %s connected again without resuming; catching up", shard_id)
            self.connected_now()


ADAPTER = DiscordBot
