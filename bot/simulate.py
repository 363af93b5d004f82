"""`thumbtune simulate`: the whole loop with simulated people, offline.

Simulated people ask questions through the real service (generator, storage), rate the
answers with 👍 when they contain a preferred word and 👎 otherwise, and after each round
the real scheduler job fires: vote gate, trainer subprocess (TRL), eval gate, registry,
hot swap. A last round of questions measures the version that went live last. The result
is one JSON object: the versions in the order they went live, each with its approval.

Everything lives in a fresh data folder (a temporary one by default), never in the
bot's own database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bot.events import IncomingPrompt, IncomingReaction, message_key
from bot.settings import Settings
from storage.registry import BASE_VERSION

log = logging.getLogger(__name__)

PLATFORM = "simulate"
QUESTIONS = (
    "hello",
    "what is the weather like",
    "will it rain tomorrow",
    "what should I eat",
    "do you like pizza",
    "what music do you like",
    "I have too much work",
    "how can I focus",
    "do you like cats",
    "should I get a dog",
    "where should I travel",
    "what should I pack",
    "can you help me",
    "I need some advice",
    "what should I do today",
    "tell me something nice",
)


@dataclass(frozen=True)
class SimulationOptions:
    users: int = 20
    rounds: int = 3
    prompts: int = 96
    prefer: str = "warm"
    model: Path | None = None
    seed: int = 0
    voters_per_answer: int = 2
    data_dir: Path | None = None
    # The tiny model learns a preference faster than GPT-2 can: a demo-sized run uses a
    # stronger step than the bot's defaults (the eval gate still guards fluency).
    learning_rate: float | None = 3e-4
    epochs: float | None = 2.0


@dataclass
class _Tally:
    answers: int = 0
    up: int = 0
    down: int = 0

    @property
    def approval(self) -> float | None:
        rated = self.up + self.down
        return round(self.up / rated, 4) if rated else None


async def simulate(options: SimulationOptions, settings: Settings) -> dict:
    """Run the loop; ``settings`` must point at a data folder of the simulation's own."""
    import torch

    from bot.app import open_runtime

    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    prefer = options.prefer.lower()
    tallies: dict[int, _Tally] = {}
    live_order: list[int] = []
    runs: list[dict] = []
    started = time.monotonic()

    async with open_runtime(settings) as runtime:
        service, loop = runtime.service, runtime.loop
        live_order.append(runtime.generator.version)

        def plan() -> tuple[str, str, list[int]]:
            voters = rng.sample(range(options.users), k=min(options.voters_per_answer, options.users))
            return f"person{rng.randrange(options.users)}", rng.choice(QUESTIONS), voters

        async def ask(round_index: int, index: int, user: str, question: str, voters: list[int]) -> None:
            reply = await service.on_prompt(
                IncomingPrompt(
                    platform=PLATFORM,
                    channel="sim",
                    user=user,
                    text=question,
                    event_id=f"r{round_index}-p{index}",
                )
            )
            if reply is None or not reply.ok or reply.model_version is None:
                return
            key = message_key(PLATFORM, "sim", str(reply.response_ids[0]))
            await service.answer_posted(reply.response_ids[0], key)
            tally = tallies.setdefault(reply.model_version, _Tally())
            tally.answers += 1
            liked = prefer in reply.text.lower()
            for voter in voters:
                await service.on_reaction(
                    IncomingReaction(
                        platform=PLATFORM, message_key=key, user=f"person{voter}", emoji="👍" if liked else "👎"
                    )
                )
                tally.up += liked
                tally.down += not liked

        for round_index in range(options.rounds + 1):
            planned = [plan() for _ in range(options.prompts)]  # drawn in order: the seed decides
            await asyncio.gather(*(ask(round_index, i, *p) for i, p in enumerate(planned)))
            if round_index == options.rounds:
                break  # the last round only measures the version now live
            finished = loop.runs_finished
            loop.scheduler.get_job("train").modify(next_run_time=datetime.now(timezone.utc))
            await loop.wait_for_run(after=finished)
            last = (await runtime.repository.training_runs(limit=1))[0]
            runs.append(
                {"round": round_index + 1, "status": last.status, "version": last.new_version, "reason": last.reason}
            )
            log.info("round %d: training %s", round_index + 1, last.status)
            if runtime.generator.version != live_order[-1]:
                live_order.append(runtime.generator.version)

        versions = []
        for version in live_order:
            tally = tallies.get(version, _Tally())
            gate: dict = {}
            if version != BASE_VERSION:
                info = loop.registry.get(version)
                gate = {"status": info.status, "parent": info.parent, **dict(info.metrics)}
            versions.append({"version": version, "approval": tally.approval, "answers": tally.answers, "gate": gate})
    return {
        "versions": versions,
        "runs": runs,
        "prefer": options.prefer,
        "seconds": round(time.monotonic() - started, 1),
    }


def simulation_settings(options: SimulationOptions, data_dir: Path, model: Path) -> Settings:
    from bot.settings import load_settings

    training = {}
    if options.learning_rate is not None:
        training["train_learning_rate"] = options.learning_rate
    if options.epochs is not None:
        training["train_epochs"] = options.epochs
    return load_settings(
        **training,
        model=str(model),
        data_dir=data_dir,
        db=data_dir / "simulate.db",
        registry_dir=str(data_dir / "models"),
        adapter="shell",
        prompts_per_minute=0,  # simulated people may ask as fast as they like
        daily_vote_cap=0,
        train_every_minutes=24 * 60,  # fired by hand after each round, through the scheduler
        train_cron=None,
        train_min_new_votes=1,
        registry_poll_s=0,
        max_new_tokens=24,
        queue_size=max(64, options.prompts),  # a round's prompts all arrive at once
        candidates=1,
        retention_days=0,
        allowed_channels=[],
        dashboard_port=0,  # a simulation needs no listener
    )


def run_simulation(options: SimulationOptions) -> dict:
    with tempfile.TemporaryDirectory(prefix="thumbtune-simulate-") as tmp:
        data_dir = options.data_dir or Path(tmp) / "data"
        model = options.model
        if model is None:
            from bot.tinymodel import make_tiny_model

            model = make_tiny_model(Path(tmp) / "tiny-model")
        settings = simulation_settings(options, Path(data_dir), Path(model))
        return asyncio.run(simulate(options, settings))


def format_result(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False, sort_keys=False)
