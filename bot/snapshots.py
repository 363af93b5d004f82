"""The bot's side of a training run's snapshot: its own database read into a dataset and
a manifest. trainer.snapshot writes and reads the files; the trainer never opens the
database (the bot is its only reader and writer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from storage.redact import Redactor
from storage.repository import Repository
from trainer.config import DataConfig, as_dict
from trainer.dataset import BuildOptions, FeedbackDataset, build_dataset, readiness, scrubbed
from trainer.snapshot import Manifest


async def collect(repository: Repository, config: DataConfig, *, parent: int) -> FeedbackDataset:
    """The dataset a run on ``parent`` trains on, read from the bot's database, with the secrets
    and personal data of ``config.redact`` replaced by placeholders (the raw texts stay in the
    database)."""
    if config.all_history:
        votes, corrections = await repository.all_votes(), await repository.corrections()
        signals = await repository.all_signals() if config.implicit else []
    else:
        votes, corrections = await repository.votes_since(parent), await repository.corrections(since_version=parent)
        signals = await repository.signals_since(parent) if config.implicit else []
    dataset = build_dataset(
        answers=await repository.feedback_answers(),
        votes=votes,
        corrections=corrections,
        signals=signals,
        options=BuildOptions(gamma=config.gamma, held_out_fraction=config.held_out_fraction),
    )
    # Scrubbed after the build: labels and the held-out split are the same with scrubbing on or off.
    return scrubbed(dataset, Redactor.from_kinds(config.redact)) if config.redact else dataset


@dataclass(frozen=True)
class Prepared:
    """A run's dataset and manifest, or why there is nothing to train on."""

    dataset: FeedbackDataset
    manifest: Manifest
    not_ready: str | None  # the reason to skip, or None


async def prepare(repository: Repository, config: DataConfig, *, run: int, parent: int, base_model: str) -> Prepared:
    cutoff = time.time()
    dataset = await collect(repository, config, parent=parent)
    manifest = Manifest(
        run=run,
        parent=parent,
        vote_cutoff=cutoff,
        base_model=base_model,
        data=as_dict(config),
        counts=dataset.counts(),
        created_at=time.time(),
    )
    return Prepared(dataset, manifest, readiness(dataset, min_examples=config.min_examples))
