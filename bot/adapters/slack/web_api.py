"""Slack's Web API as the adapter uses it: the client, its errors, paging, and who is who.

Every call goes through slack_sdk's ``AsyncWebClient`` (a 429 waits for Retry-After and
tries again); the methods this package may call are declared in :mod:`.scopes`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# How often a rate-limited Web API call is retried after its Retry-After.
RATE_LIMIT_RETRIES = 3


def web_client(*, token: str, api_url: str | None = None) -> AsyncWebClient:
    """The Web API client: 429s wait for Retry-After and try again; other errors raise."""
    base_url = api_url or AsyncWebClient.BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"  # slack_sdk joins "base_url + method"
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )


def api_error(exc: SlackApiError) -> str:
    """Slack's error code (``not_in_channel``), or the HTTP status when the body was not JSON."""
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(exc.response, 'status_code', '?')}"


def failure(exc: Exception) -> str:
    """A failed Web API call in a few words, for the log (never headers or tokens)."""
    return api_error(exc) if isinstance(exc, SlackApiError) else f"{type(exc).__name__}: {exc}"


async def pages(method: Callable[..., Awaitable[Any]], **args: Any) -> AsyncIterator[Any]:
    """Every page of a cursor-paged Web API method (``response_metadata.next_cursor``)."""
    cursor: str | None = None
    while True:
        response = await method(**args, cursor=cursor)
        yield response
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            return


async def thread_of(client: AsyncWebClient, channel: str, ts: str) -> list[dict[str, Any]]:
    """Every message of the thread under ``ts`` (its parent first), page by page (``conversations.replies``)."""
    thread: list[dict[str, Any]] = []
    async for response in pages(client.conversations_replies, channel=channel, ts=ts, limit=200):
        thread.extend(m for m in response.get("messages") or [] if isinstance(m, dict) and "ts" in m)
    return thread


class Users:
    """Who is who: the bot's own user id (``auth.test``) and which users are bots (``users.info``), cached."""

    def __init__(self) -> None:
        self.own_id: str | None = None  # from auth.test
        self._bots: dict[str, bool] = {}  # user id -> is a bot

    async def own(self, client: AsyncWebClient) -> str | None:
        """The bot's own user id, asked for once."""
        if self.own_id is None:
            self.own_id = (await client.auth_test()).get("user_id")
        return self.own_id

    def looked_up(self, user: str) -> bool:
        return user in self._bots

    def known_bot(self, user: str) -> bool:
        """Known to be a bot from an earlier look-up (an unknown user is not, yet)."""
        return self._bots.get(user, False)

    async def is_bot(self, user: str, client: AsyncWebClient) -> bool:
        if user not in self._bots:
            try:
                info = await client.users_info(user=user)
            except SlackApiError as exc:
                # Better to count a person's vote than to drop it for a lookup failure.
                log.warning("slack: users.info failed for a voter: %s; counting the vote", api_error(exc))
                return False
            profile = info.get("user") or {}
            self._bots[user] = bool(profile.get("is_bot") or profile.get("is_app_user"))
        return self._bots[user]
