"""`export --format kto|dpo|sft`: the feedback as JSONL in TRL's dataset formats.

Light on purpose (no torch): ``thumbtune export`` calls it in the bot's process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Literal

from storage.database import Database
from storage.repository import Repository
from trainer.dataset import BuildOptions, build_dataset, dpo_records, kto_records, sft_records

ExportFormat = Literal["kto", "dpo", "sft"]
FORMATS: tuple[str, ...] = ("kto", "dpo", "sft")


async def export_records(db: Path, *, fmt: ExportFormat, gamma: float = 0.0) -> list[dict[str, object]]:
    """Every usable example (train and held-out alike), shaped for ``fmt``."""
    async with await Database.open(db) as database:
        repository = Repository(database)
        dataset = build_dataset(
            answers=await repository.feedback_answers(),
            votes=await repository.all_votes(),
            corrections=await repository.corrections(),
            options=BuildOptions(gamma=gamma, held_out_fraction=0.0),
        )
    if fmt == "kto":
        return kto_records(dataset.train)
    if fmt == "dpo":
        return dpo_records(dataset.train_pairs)
    if fmt == "sft":
        return sft_records(dataset.train, dataset.train_pairs)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_jsonl(records: Iterable[dict[str, object]], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def export(db: Path, *, fmt: ExportFormat, out: Path | None = None, gamma: float = 0.0) -> int:
    """Write the records to ``out`` (stdout when None); says how many on stderr."""
    import asyncio
    import sys

    records = asyncio.run(export_records(db, fmt=fmt, gamma=gamma))
    if out is None:
        return write_jsonl(records, sys.stdout)
    with open(out, "w", encoding="utf-8") as handle:
        count = write_jsonl(records, handle)
    print(f"wrote {count} {fmt} records to {out}", file=sys.stderr)
    return count
