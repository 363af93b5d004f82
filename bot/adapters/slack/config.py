"""What the Slack adapter takes from the settings, checked up front."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bot.adapters.base import Lifecycle
from bot.settings import Settings, SettingsError, default_of


@dataclass(frozen=True)
class SlackConfig:
    """What the Slack adapter needs from the settings (tokens are never shown in repr); the
    defaults are the settings' own (:func:`bot.settings.default_of`)."""

    bot_token: str = field(repr=False)
    signing_secret: str = field(default="", repr=False)
    app_token: str | None = field(default=None, repr=False)
    api_url: str | None = None
    correction_prefix: str = default_of("correction_prefix")
    http_host: str = default_of("http_host")
    http_port: int = default_of("http_port")
    reconcile_hours: float = default_of("reconcile_hours")  # catch up on answers this recent at start; 0 = off
    reconcile_max_messages: int = default_of("reconcile_max_messages")  # ... but on at most this many, newest first
    announce_channel: str | None = None  # where a new model version going live is announced
    pending_hours: float = default_of("pending_hours")  # answer prompts left pending by the last run if this recent
    shutdown_grace_s: float = default_of("shutdown_grace_s")  # on stop, finish the answers in flight this long

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    @property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle.from_settings(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig:
        """Check the Slack settings up front; a missing one raises :class:`SettingsError` naming it."""
        if settings.slack_bot_token is None:
            raise SettingsError("SLACK_BOT_TOKEN: needed for the Slack adapter (xoxb-...)")
        app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
        if app_token is not None and not app_token.startswith("xapp-"):
            raise SettingsError("SLACK_APP_TOKEN: an app-level token starts with xapp-")
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        if app_token is None and not secret:
            raise SettingsError("SLACK_SIGNING_SECRET: needed in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
        return cls(
            bot_token=settings.slack_bot_token.get_secret_value(),
            signing_secret=secret,
            app_token=app_token,
            api_url=settings.slack_api_url,
            correction_prefix=settings.correction_prefix,
            http_host=settings.http_host,
            http_port=settings.http_port,
            announce_channel=settings.announce_channel,
            **dataclasses.asdict(Lifecycle.from_settings(settings)),
        )
