"""The pieces of the platform template every adapter shares (bot/adapters/base.py)."""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.base import ChatPrefix, InFlight


@pytest.mark.parametrize(
    ("word", "text", "rest"),
    [
        ("better:", "better: a tree is a plant", " a tree is a plant"),
        ("better:", "  BETTER:it is green  ", "it is green"),
        (" Better: ", "better: ok", " ok"),  # blanks around the configured word are ignored
        ("better:", "is better: this?", None),
        ("better:", "better", None),
        ("besser:", "BESSER: gut", " gut"),
        ("", "anything", None),  # no word, no prefix
    ],
)
def test_a_chat_prefix_is_matched_case_blind_and_gives_what_follows(word: str, text: str, rest: str | None) -> None:
    prefix = ChatPrefix(word)
    assert prefix.rest(text) == rest
    assert prefix.starts(text) is (rest is not None)


async def test_draining_waits_within_the_grace_and_cancels_only_tasks_of_its_own() -> None:
    in_flight = InFlight("test")
    finished: list[str] = []

    async def answer(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    async def handler() -> None:  # a task the platform library started
        with in_flight.holding():
            await asyncio.sleep(0.3)
        finished.append("handler")

    in_flight.spawn(answer("quick", 0.01), what="a quick answer")
    slow = in_flight.spawn(answer("slow", 10), what="a slow answer")
    handled = asyncio.create_task(handler())
    await asyncio.sleep(0)
    assert in_flight

    await in_flight.drain(0.1)

    assert finished == ["quick"] and slow.cancelled()
    await handled  # waited for, never cancelled: it still finishes
    assert finished == ["quick", "handler"] and not in_flight
