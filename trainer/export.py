"""`export --format kto|dpo|sft`: the feedback as JSONL in TRL's dataset formats;
`export --format hf --out DIR`: all of them as one Hugging Face ``datasets`` folder.

Light on purpose (no torch): ``thumbtune export`` calls it in the bot's process.
Exports hold texts, labels and versions only: no person keys, channels or conversation ids;
the texts have their secrets and personal data replaced by placeholders (``redact``: the
kinds of storage.redact, all by default; ``THUMBTUNE_REDACT`` for ``thumbtune export``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Literal

from storage.database import Database
from storage.redact import KINDS, Redactor, placeholder
from storage.repository import ComparisonVote, FeedbackAnswer, Repository
from trainer.dataset import (
    BuildOptions,
    FeedbackDataset,
    build_dataset,
    completion_of,
    dpo_records,
    kto_records,
    prompt_of,
    scrubbed,
    sft_records,
)
from trainer.requirements import missing_extra

ExportFormat = Literal["kto", "dpo", "sft", "hf"]
FORMATS: tuple[str, ...] = ("kto", "dpo", "sft", "hf")
JSONL_FORMATS: tuple[str, ...] = ("kto", "dpo", "sft")

# The stored verdict emoji (bot.comparison; the trainer never imports the bot) -> its name.
_VERDICTS = {"1\ufe0f\u20e3": "first", "2\ufe0f\u20e3": "second", "🤝": "tie", "👎": "both_bad"}


async def _load(
    db: Path | str, *, gamma: float, redactor: Redactor
) -> tuple[FeedbackDataset, list[FeedbackAnswer], list[ComparisonVote]]:
    async with await Database.open(db) as database:
        repository = Repository(database)
        answers = await repository.feedback_answers()
        dataset = build_dataset(
            answers=answers,
            votes=await repository.all_votes(),
            corrections=await repository.corrections(),
            options=BuildOptions(gamma=gamma, held_out_fraction=0.0),
        )
        verdicts = await repository.comparison_votes()
    return scrubbed(dataset, redactor), answers, verdicts


async def export_records(
    db: Path | str, *, fmt: ExportFormat, gamma: float = 0.0, redact: Sequence[str] = KINDS
) -> list[dict[str, object]]:
    """Every usable example (train and held-out alike), shaped for ``fmt``, scrubbed of ``redact``."""
    dataset, _, _ = await _load(db, gamma=gamma, redactor=Redactor.from_kinds(redact))
    return _records(dataset, fmt)


def _records(dataset: FeedbackDataset, fmt: str) -> list[dict[str, object]]:
    if fmt == "kto":
        return kto_records(dataset.train)
    if fmt == "dpo":
        return dpo_records(dataset.train_pairs)
    if fmt == "sft":
        return sft_records(dataset.train, dataset.train_pairs)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(JSONL_FORMATS)}")


def comparison_records(
    answers: list[FeedbackAnswer], verdicts: list[ComparisonVote], redact: Callable[[str], str]
) -> list[dict[str, object]]:
    """One row per person's verdict on a comparison (who gave it left out); flagged answers skipped;
    texts passed through ``redact``."""
    shown = {(a.prompt_id, a.candidate): a for a in answers}
    records = []
    for verdict in verdicts:
        first, second = shown.get((verdict.prompt_id, 0)), shown.get((verdict.prompt_id, 1))
        name = _VERDICTS.get(verdict.emoji)
        if first is None or second is None or name is None or first.flagged or second.flagged:
            continue
        records.append(
            {
                "prompt": redact(prompt_of(first)),
                "first": redact(completion_of(first.text)),
                "second": redact(completion_of(second.text)),
                "verdict": name,
                "first_version": verdict.first_version,
                "second_version": verdict.second_version,
            }
        )
    return records


def export_hf(db: Path | str, out: Path, *, gamma: float = 0.0, redact: Sequence[str] = KINDS) -> dict[str, int]:
    """Write a ``datasets`` folder (``DatasetDict.save_to_disk``) with a dataset card; rows per split."""
    import asyncio

    from datasets import Dataset, DatasetDict, Features, Value

    redactor = Redactor.from_kinds(redact)
    dataset, answers, verdicts = asyncio.run(_load(db, gamma=gamma, redactor=redactor))
    text = Value("string")
    splits = {
        "kto": (_records(dataset, "kto"), Features({"prompt": text, "completion": text, "label": Value("bool")})),
        "dpo": (_records(dataset, "dpo"), Features({"prompt": text, "chosen": text, "rejected": text})),
        "sft": (_records(dataset, "sft"), Features({"prompt": text, "completion": text})),
        "comparisons": (
            comparison_records(answers, verdicts, redactor),
            Features(
                {
                    "prompt": text,
                    "first": text,
                    "second": text,
                    "verdict": text,
                    "first_version": Value("int64"),
                    "second_version": Value("int64"),
                }
            ),
        ),
    }
    # An empty split is kept, with its columns and one (empty) shard: `datasets` builds an
    # empty list without columns and writes no shard for it, and neither loads back.
    folder = DatasetDict(
        {
            name: Dataset.from_list(records, features=features)
            if records
            else Dataset.from_dict({column: [] for column in features}, features=features)
            for name, (records, features) in splits.items()
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    folder.save_to_disk(str(out), num_shards={name: 1 for name, (records, _) in splits.items() if not records})
    counts = {name: len(records) for name, (records, _) in splits.items()}
    (out / "README.md").write_text(dataset_card(counts, gamma=gamma, redact=redactor.kinds), encoding="utf-8")
    return counts


def dataset_card(counts: dict[str, int], *, gamma: float, redact: Sequence[str] = KINDS) -> str:
    """The README.md of an `export --format hf` folder: what each split and field means."""
    rows = "\n".join(f"| `{name}` | {count} |" for name, count in counts.items())
    placeholders = ", ".join(f"`{placeholder(kind)}`" for kind in redact)
    scrubbing = (
        f"Secrets and personal data found in the texts were replaced by placeholders ({placeholders}); "
        "detectors miss some, and names or street addresses in free text are not detected."
        if redact
        else "The texts were exported as people wrote them: scrubbing was off (THUMBTUNE_REDACT=off)."
    )
    return f"""---
pretty_name: thumbtune feedback
tags:
- rlhf
- kto
- dpo
- human-feedback
configs:
- config_name: default
---

# thumbtune feedback

Human feedback collected by a thumbtune chat bot: people reacted to the bot's answers
with emoji (👍 / 👎, or 1️⃣ / 2️⃣ / 🤝 / 👎 on a comparison of two answers) and wrote
better answers. Load it with `datasets.load_from_disk(DIR)`; each split is ready for the
TRL trainer of the same name.

| split | rows |
|---|---|
{rows}

Prompts are the full dialogue text the model continued (`User: ...` / `Bot:` turns,
ending with `Bot:`); completions start with a space. Thread credit gamma = {gamma:g}.

## Fields

- `kto` (TRL `KTOTrainer`, unpaired preference): `prompt`; `completion` (an answer);
  `label` (true: desirable — its net reward, the sum of its votes' rewards, was above 0 —
  false: undesirable). Answers whose rewards cancel out are left out.
- `dpo` (TRL `DPOTrainer`, paired preference): `prompt`; `chosen`; `rejected`. Pairs come
  from two answers to one prompt rated differently (a 1️⃣ / 2️⃣ verdict is such a pair) and
  from a person's correction (chosen) of an answer (rejected).
- `sft` (TRL `SFTTrainer`, prompt-completion): `prompt`; `completion` (liked answers and
  people's corrections).
- `comparisons` (raw comparison verdicts, one row per person's verdict): `prompt`;
  `first` and `second` (the answers shown as 1️⃣ and 2️⃣); `verdict` (`first` or `second`:
  that one is better; `tie`: equally good; `both_bad`: neither is good); `first_version`
  and `second_version` (the model version that wrote each answer).

## Privacy

No person keys (the keyed hashes the bot stores for people), user ids, channel or
conversation ids are exported. Answers flagged by people are left out; data of people
who asked to be forgotten was deleted before the export. {scrubbing}
"""


def write_jsonl(records: Iterable[dict[str, object]], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


class ExportError(Exception):
    """An export cannot be written as asked; the message says why in one line."""


def export(
    db: Path | str, *, fmt: ExportFormat, out: Path | None = None, gamma: float = 0.0, redact: Sequence[str] = KINDS
) -> int:
    """Write the records to ``out`` (stdout when None); says how many on stderr.

    Raises :class:`ExportError` before writing anything when the export cannot be made.
    """
    import asyncio
    import sys

    if fmt == "hf":
        if out is None:
            raise ExportError("--format hf writes a folder: give it with --out DIR")
        problem = missing_extra("--format hf", ("datasets",))
        if problem:
            raise ExportError(problem)
        counts = export_hf(db, out, gamma=gamma, redact=redact)
        print(
            f"wrote a datasets folder to {out}: " + ", ".join(f"{n} {name}" for name, n in counts.items()),
            file=sys.stderr,
        )
        return sum(counts.values())

    records = asyncio.run(export_records(db, fmt=fmt, gamma=gamma, redact=redact))
    if out is None:
        return write_jsonl(records, sys.stdout)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as handle:
            count = write_jsonl(records, handle)
    except OSError as exc:
        raise ExportError(f"cannot write {out} ({exc.strerror or exc})") from None
    print(f"wrote {count} {fmt} records to {out}", file=sys.stderr)
    return count
