"""Mention -> rated answer through the real discord.py client and the local fake Discord.

Measures what a person waits for: from posting a mention to the bot's reply carrying both
thumbs, one at a time and then many at once (generation batches concurrent prompts).
Uses the tiny model, so the figures are adapter + storage + batching overhead, not GPT-2
speed. Prints one JSON object on its last line.

    python -m bench.discord_roundtrip [--prompts 16] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import discord
import torch
import yarl

from bot.adapters.discord import DiscordBot
from bot.app import open_runtime
from bot.settings import load_settings
from bot.tinymodel import make_tiny_model
from tests.fakes.discord import TOKEN, FakeDiscord, Person
from tests.helpers import wait_for

ASKER = Person(1001, "alice")


async def _answered(fake: FakeDiscord, prompt_id: int) -> float:
    answer = await wait_for(lambda: fake.answer_to(prompt_id), timeout=120, interval=0.002)
    answer_id = int(answer["id"])
    thumbs = {(answer_id, fake.bot.id, "👍"), (answer_id, fake.bot.id, "👎")}
    await wait_for(lambda: thumbs <= fake.reactions, timeout=120, interval=0.002)
    return time.perf_counter()


async def _round_trip(fake: FakeDiscord, text: str) -> float:
    started = time.perf_counter()
    prompt_id = await fake.say(ASKER, text, mention_bot=True)
    return await _answered(fake, prompt_id) - started


async def run(*, prompts: int, max_new_tokens: int) -> dict[str, object]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(Path(tmp) / "tiny")
        settings = load_settings(
            model=str(model),
            data_dir=Path(tmp) / "data",
            max_new_tokens=max_new_tokens,
            torch_threads=1,
            dashboard_port=0,
        )
        fake = FakeDiscord()
        await fake.start()
        discord.http.Route.BASE = fake.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
        async with open_runtime(settings) as runtime:
            bot = DiscordBot(service=runtime.service, token=TOKEN, guild_ready_timeout=0.2)
            serving = asyncio.create_task(bot.serve())
            started = time.perf_counter()
            await wait_for(bot.is_ready, timeout=30)
            ready_s = time.perf_counter() - started

            await _round_trip(fake, "warm up")
            sequential = [await _round_trip(fake, f"question {i}") for i in range(prompts)]

            started = time.perf_counter()
            ids = [await fake.say(ASKER, f"burst {i}", mention_bot=True) for i in range(prompts)]
            finished = await asyncio.gather(*(_answered(fake, prompt_id) for prompt_id in ids))
            burst_s = max(finished) - started

            await bot.close()
            await serving
        await fake.close()
    return {
        "bench": "discord_roundtrip",
        "prompts": prompts,
        "max_new_tokens": max_new_tokens,
        "login_to_ready_s": round(ready_s, 3),
        "sequential_median_s": round(statistics.median(sequential), 4),
        "sequential_max_s": round(max(sequential), 4),
        "burst_total_s": round(burst_s, 3),
        "burst_answers_per_s": round(prompts / burst_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(prompts=args.prompts, max_new_tokens=args.max_new_tokens))))


if __name__ == "__main__":
    main()
