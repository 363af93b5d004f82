"""Slack: a slack-bolt ``AsyncApp`` that answers mentions, DMs and ``/ask``, and turns reactions into votes.

Payloads are translated here into the core's values (:mod:`bot.events`); the service
never sees a Slack type. Two ways to connect: Socket Mode when an app-level token is set
(no public URL needed), else HTTP, with bolt's aiohttp adapter serving ``/slack/events``.
Once connected, the bot runs the lifecycle every platform shares
(:class:`bot.adapters.base.Platform`): it answers the prompts left pending by its last run,
catches up on reactions and on prompts sent while it was down, serves, and on stop
finishes the answers in flight within ``THUMBTUNE_SHUTDOWN_GRACE_S``.

One concern a module:

- ``adapter``: :class:`SlackBot`, the parts composed once, and the platform contract;
- ``config``: :class:`SlackConfig`, what it takes from the settings;
- ``transport``: Socket Mode or HTTP (signature check, 503 while stopping);
- ``listeners``: what each event does (mentions, DMs, corrections, ``/ask``, reactions);
- ``replies``: what the bot posts (answers, files, pre-added reactions, announcements);
- ``catchup``: the prompts and reactions missed while down, read from Slack's history;
- ``web_api``: the Web API client, its errors and paging, who is a bot;
- ``payloads``: Slack's JSON ↔ the core's values, and how a request is logged;
- ``scopes``: what each feature needs (``manifest.yml`` asks for exactly that).
"""

from __future__ import annotations

from bot.adapters.slack.adapter import ADAPTER, SlackBot
from bot.adapters.slack.config import SlackConfig
from bot.adapters.slack.listeners import ASK_COMMAND, NOT_TAKEN, ShuttingDown
from bot.adapters.slack.payloads import PLATFORM, SLACK_NAMES
from bot.adapters.slack.scopes import NEEDS
from bot.adapters.slack.transport import EVENTS_PATH
from bot.adapters.slack.web_api import web_client

__all__ = [
    "ADAPTER",
    "ASK_COMMAND",
    "EVENTS_PATH",
    "NEEDS",
    "NOT_TAKEN",
    "PLATFORM",
    "SLACK_NAMES",
    "ShuttingDown",
    "SlackBot",
    "SlackConfig",
    "web_client",
]
