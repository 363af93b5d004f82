"""Seeding a real database with answers, votes and implicit signals, for the trainer's tests and benchmark."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from storage.dialogue import render_prompt
from storage.repository import NewResponse, Repository
from trainer.dataset import signal_weights

QUESTIONS = (
    "hi",
    "what is the weather like",
    "where should I travel",
    "tell me something nice",
    "how can I focus",
    "my cat is sleeping",
    "I have too much work",
    "what should I eat",
    "any plans for today",
    "I am bored",
    "what do you like",
    "how are you",
)
ANSWERS = (
    "I like apples and fresh bread.",
    "It looks sunny and warm today.",
    "Take a short break, then do one small task at a time.",
    "Visit a city with old streets and good food.",
    "Go for a walk and enjoy the fresh air.",
    "Your cat is happy and warm, let it sleep.",
    "Apples are sweet, try one with some cheese.",
    "Rest a little, you will feel better soon.",
    "Pack light and bring a good book.",
    "An apple a day, I like apples a lot.",
)


@dataclass(frozen=True)
class Seeded:
    response_ids: tuple[int, ...]
    liked: int
    disliked: int


async def seed_preference(
    repository: Repository, *, answers: int, favoured: str = "apple", seed: int = 0, voters: int = 2
) -> Seeded:
    """``answers`` lone prompts; answers containing ``favoured`` get 👍, the others 👎."""
    rng = random.Random(seed)
    ids, liked, disliked = [], 0, 0
    for index in range(answers):
        question = rng.choice(QUESTIONS)
        text = rng.choice(ANSWERS)
        stored = await repository.record_answer(
            platform="shell",
            channel="local",
            author=f"asker{index % 3}",
            text=question,
            context=render_prompt(question),
            responses=[NewResponse(text=text, model_version=0, temperature=0.9, top_p=0.95, max_new_tokens=24)],
        )
        response_id = stored.response_ids[0]
        good = favoured in text.lower()
        for voter in range(voters):
            await repository.record_vote(
                response_id=response_id,
                voter=f"voter{voter}",
                emoji="👍" if good else "👎",
                reward=1.0 if good else -1.0,
            )
        liked += good
        disliked += not good
        ids.append(response_id)
    return Seeded(tuple(ids), liked, disliked)


async def add_signals(
    repository: Repository, kinds: dict[str, tuple[int, int]], *, person: str = "asker0"
) -> list[dict[str, object]]:
    """For each kind, ``person``'s (agreeing, disagreeing) signals on answers that have votes,
    each on an answer no signal of its kind is on yet; each kind's figures over the database afterwards."""
    net: dict[int, float] = {}
    for vote in await repository.all_votes():
        net[vote.response_id] = net.get(vote.response_id, 0.0) + vote.reward
    taken = {(s.response_id, s.kind) for s in await repository.all_signals()}
    for kind, (agreeing, disagreeing) in kinds.items():
        value = 1.0 if kind == "reply_positive" else -1.0
        free = [answer for answer in sorted(net) if (answer, kind) not in taken]
        agree = [answer for answer in free if (net[answer] > 0) == (value > 0)][:agreeing]
        disagree = [answer for answer in free if (net[answer] > 0) != (value > 0)][:disagreeing]
        for answer in agree + disagree:
            await repository.record_signal(response_id=answer, person=person, kind=kind, value=value)
    weights = signal_weights(await repository.all_signals(), await repository.all_votes())
    return [dataclasses.asdict(weight) for weight in weights.values()]
