"""`forget me` beyond the database: the files the bot made from it.

The database side is storage.repository.Repository.forget_person; it says which texts
went (the person's prompts, the answers to them, their corrections). The same texts are
then taken out of every run snapshot in the artifact store (trainer.snapshot) and of
every version's ``changes.json`` in the registry (storage.registry). Model weights that
were trained on them are not changed (docs/privacy.md, "Data we keep").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

import trainer.snapshot as snapshot
from storage.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopiesForgotten:
    snapshots: int  # run snapshots rewritten
    versions: int  # changes.json files rewritten
    failed: bool = False  # a store could not be rewritten (logged): copies may remain


@dataclass(frozen=True)
class Copies:
    """Where copies of people's texts are: the artifact store and the model registry."""

    artifacts_uri: str
    registry: ModelRegistry
    redact: Callable[[str], str] = str  # the files hold texts as THUMBTUNE_REDACT scrubbed them

    async def forget(self, texts: Collection[str]) -> CopiesForgotten:
        if not texts:
            return CopiesForgotten(0, 0)
        texts = {*texts, *(self.redact(text) for text in texts)}
        snapshots = versions = 0
        failed = False
        try:
            snapshots = await asyncio.to_thread(snapshot.forget_texts, self.artifacts_uri, texts)
        except Exception:  # the database side is done; say loudly what is left
            log.exception("forget: the run snapshots could not be rewritten; earlier copies remain there")
            failed = True
        try:
            versions = await asyncio.to_thread(self.registry.forget_texts, texts)
        except Exception:
            log.exception("forget: the versions' changes.json could not be rewritten; earlier copies remain there")
            failed = True
        return CopiesForgotten(snapshots, versions, failed)
