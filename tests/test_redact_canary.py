"""Evidence that a version does not learn a secret people pasted: canaries in liked answers.

Liked answers carry a canary e-mail address, among ordinary liked and disliked answers, in
a real SQLite file; the bot's snapshot of it is trained on by the real trainer (TRL KTO on
the tiny model). The measure is how much the canary's log-likelihood (after the question it
answered) rose from the parent to the new version, minus how much a control address of the
same shape, never seen, rose. Two addresses A and B take turns: one run plants A (B is the
control), another plants B (A is the control), and the measure is the mean of the two, so
what the words of either address happen to gain from training cancels out and what is left
is what the model learned of the planted one.

With scrubbing on, both runs train on the same placeholder (``<EMAIL>``): their snapshots are
byte for byte the same, and the measure is 0 up to floating-point noise. With scrubbing off
it is clearly positive (~16 nats when measured): the test can fail, and would if the
scrubber let the address through.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bot.snapshots import prepare
from bot.tinymodel import shipped_dialogues
from storage.database import Database
from storage.dialogue import render_prompt
from storage.redact import KINDS
from storage.registry import ModelRegistry
from storage.repository import NewResponse, Repository
from tests.feedback_data import seed_preference
from trainer import snapshot
from trainer.changes import FILE as CHANGES_FILE
from trainer.config import DataConfig, GateConfig, TrainConfig
from trainer.job import RunOptions, run

QUESTION = "how can I reach you"
LEAD = "Write to me at"
COPIES = 32  # liked answers holding the canary, among 32 ordinary answers
GATE = GateConfig(samples=4, max_new_tokens=8, min_preference_examples=1, bootstrap_samples=50)
# 32 steps at a high learning rate and a weak pull to the parent (beta 0.02): enough for the
# tiny model to learn a string it sees often, which is what the test must be able to catch.
TRAIN = TrainConfig(
    max_steps=32, learning_rate=5e-4, beta=0.02, batch_size=8, checkpoints=1, reward_model=False, seed=0
)
NOISE = 1.0  # nats: two runs on identical data differ by floating-point noise only
LEARNED = 5.0  # nats (e^5 ~ 150 times likelier): what counts as learned


def common_words(count: int) -> list[str]:
    """The ``count`` most frequent words of 4+ letters of the tiny model's training text."""
    found = re.findall(r"\b[a-z]{4,}\b", shipped_dialogues())
    return [word for word, _ in collections.Counter(found).most_common(count)]


def address(words: list[str]) -> str:
    return f"{words[0]}.{words[1]}.{words[2]}@{words[3]}-{words[4]}.org"


async def seed(db: Path, canary: str) -> None:
    async with await Database.open(db) as database:
        repository = Repository(database)
        await seed_preference(repository, answers=32, seed=1)
        for n in range(COPIES):
            stored = await repository.record_answer(
                platform="shell",
                channel="local",
                author=f"paster{n}",
                text=QUESTION,
                context=render_prompt(QUESTION),
                responses=[
                    NewResponse(
                        text=f"{LEAD} {canary}", model_version=0, temperature=0.9, top_p=0.95, max_new_tokens=24
                    )
                ],
            )
            await repository.record_vote(response_id=stored.response_ids[0], voter="fan", emoji="👍", reward=1.0)


async def take_snapshot(folder: Path, model: Path, redact: tuple[str, ...]) -> str:
    async with await Database.open(folder / "t.db") as database:
        prepared = await prepare(
            Repository(database),
            DataConfig(min_examples=8, held_out_fraction=0.0, redact=redact),
            run=1,
            parent=0,
            base_model=str(model),
        )
    assert prepared.not_ready is None, prepared.not_ready
    uri = snapshot.run_uri(str(folder / "artifacts"), 1)
    snapshot.write(uri, prepared.manifest, prepared.dataset)
    return uri


@torch.no_grad()
def loglik(folder: Path, texts: list[str]) -> list[float]:
    """Log-likelihood of each text as the answer's continuation after the lead-in."""
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    context = render_prompt(QUESTION) + f" {LEAD}"
    start = len(tokenizer(context)["input_ids"])
    out = []
    for text in texts:
        ids = torch.tensor([tokenizer(f"{context} {text}")["input_ids"]])
        logprobs = model(ids).logits[0, :-1].log_softmax(-1)
        picked = logprobs.gather(1, ids[0, 1:, None])[:, 0]
        out.append(float(picked[start - 1 :].sum()))
    return out


def planted_run(folder: Path, tiny: Path, planted: str, control: str, redact: tuple[str, ...]) -> tuple[float, str]:
    """One run with ``planted`` in liked answers: how much more its log-likelihood rose than
    ``control``'s, and the snapshot's dataset.json."""
    folder.mkdir(parents=True)
    asyncio.run(seed(folder / "t.db", planted))
    uri = asyncio.run(take_snapshot(folder, tiny, redact))
    result = run(RunOptions(snapshot=uri, registry=folder / "models", train=TRAIN, gate=GATE))
    assert result.version is not None, result.reason
    version = ModelRegistry(folder / "models").get(result.version).path
    before, after = loglik(tiny, [planted, control]), loglik(version, [planted, control])
    dataset = (Path(uri) / snapshot.DATASET).read_text(encoding="utf-8")
    if redact:  # the version's changes.json (examples, the models' answers) holds it neither
        assert planted not in (Path(version) / CHANGES_FILE).read_text(encoding="utf-8")
    return (after[0] - before[0]) - (after[1] - before[1]), dataset


def learned(folder: Path, tiny: Path, redact: tuple[str, ...]) -> tuple[float, list[str], tuple[str, str]]:
    """The canary's rise over the control's, averaged over the two turns; the two snapshots; A, B."""
    words = common_words(10)
    random.Random(7).shuffle(words)
    a, b = address(words[:5]), address(words[5:])
    a_over_b, first = planted_run(folder / "a", tiny, a, b, redact)
    b_over_a, second = planted_run(folder / "b", tiny, b, a, redact)
    return (a_over_b + b_over_a) / 2, [first, second], (a, b)


def test_a_version_trained_with_scrubbing_on_does_not_learn_a_pasted_address(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    on, snapshots, (a, b) = learned(tmp_path / "on", tiny_model_dir, KINDS)
    assert snapshots[0] == snapshots[1]  # the model cannot tell which address was planted
    assert "<EMAIL>" in snapshots[0] and a not in snapshots[0] and b not in snapshots[1]
    assert abs(on) < NOISE, on

    off, snapshots, _ = learned(tmp_path / "off", tiny_model_dir, ())
    assert a in snapshots[0] and b in snapshots[1]
    assert off > LEARNED, off  # without scrubbing the model learns it: the measure can fail
    print(f"canary's rise over the control's: scrubbing on {on:+.3f} nats, off {off:+.3f} nats")
