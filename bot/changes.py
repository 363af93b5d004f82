"""A version's "what changed" (written by the trainer, trainer.changes) for people: the
two lines of a new version's announcement, and ``thumbtune diff`` (with the implicit
signals' weights as the version's own run used them: bot.agreement).

The report is read validated (:class:`storage.records.ChangesRecord`, from
ModelRegistry.changes); :func:`for_people` turns it into what people may see
(:class:`ShownChanges`), which the dashboard's version page shows as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot import agreement
from storage.records import ChangedAnswer, ChangesRecord, QuotedExample

SHOWN_ANSWERS = 8  # answer pairs printed by `thumbtune diff` (all of them with --json)
HIDDEN = "(text no longer kept)"


@dataclass(frozen=True)
class ShownAnswer:
    """A fixed prompt's answers by the parent and by the version, as people may see them."""

    question: str
    before: str
    after: str
    source: str  # reference (the project's own prompts) or held_out (a person's)
    changed: bool  # the version answers it differently (known even when the texts are hidden)
    hidden: bool = False  # a person's prompt the database no longer holds: the texts read HIDDEN


@dataclass(frozen=True)
class ShownExample:
    """A training example the report quotes (most liked or disliked), as people may see it."""

    question: str
    answer: str
    reward: float
    hidden: bool = False


@dataclass(frozen=True)
class ShownChanges:
    """The report as people may see it: the record's share, words, counts and gate as they
    are; its quoted texts redacted, or hidden once the database no longer holds them."""

    record: ChangesRecord
    answers: tuple[ShownAnswer, ...]
    most_liked: tuple[ShownExample, ...]
    most_disliked: tuple[ShownExample, ...]

    def as_dict(self) -> dict[str, Any]:
        """The record's JSON shape (`thumbtune diff --json`), each answer with ``changed``
        and a hidden text marked ``"hidden": true``."""
        record = self.record.model_dump()
        quoted = {"most_liked": _plain(self.most_liked), "most_disliked": _plain(self.most_disliked)}
        return {**record, "answers": _plain(self.answers), "data": {**record["data"], **quoted}}


def _plain(items: tuple[ShownAnswer, ...] | tuple[ShownExample, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in dataclasses.asdict(item).items() if k != "hidden" or v} for item in items]


def quoted_questions(changes: ChangesRecord) -> list[str]:
    """The people's prompts a version's report quotes (reference prompts are the project's own)."""
    data = changes.data
    quoted = [example.question for example in (*data.most_liked, *data.most_disliked)]
    quoted += [answer.question for answer in changes.answers if answer.source != "reference"]
    return quoted


def for_people(changes: ChangesRecord, kept: set[str], redact: Callable[[str], str] = str) -> ShownChanges:
    """The report as people may see it: a person's prompt quoted in it (with the answers to
    it) is shown only while the database still holds it (``kept``: see
    Repository.kept_prompts); blanked by retention or deleted by `forget me`, it reads
    :data:`HIDDEN` and the answer is marked ``hidden``. Every text shown goes through
    ``redact`` (THUMBTUNE_REDACT), so a report written before scrubbing shows no secret."""

    def example(item: QuotedExample) -> ShownExample:
        if item.question not in kept:
            return ShownExample(question=HIDDEN, answer=HIDDEN, reward=item.reward, hidden=True)
        return ShownExample(question=redact(item.question), answer=redact(item.answer), reward=item.reward)

    def answer(item: ChangedAnswer) -> ShownAnswer:
        changed = item.before != item.after
        if item.source == "reference" or item.question in kept:
            texts = (redact(item.question), redact(item.before), redact(item.after))
            return ShownAnswer(*texts, source=item.source, changed=changed)
        return ShownAnswer(HIDDEN, HIDDEN, HIDDEN, source=item.source, changed=changed, hidden=True)

    return ShownChanges(
        record=changes,
        answers=tuple(answer(item) for item in changes.answers),
        most_liked=tuple(example(item) for item in changes.data.most_liked),
        most_disliked=tuple(example(item) for item in changes.data.most_disliked),
    )


def summary(changes: ChangesRecord) -> str:
    """Two lines: how many fixed prompts it answers differently, and which words moved."""
    answers = len(changes.answers)
    changed = round(changes.changed_share * answers)
    return f"It answers {changed} of {answers} fixed prompts differently.\n{_words(changes)}"


def render(version: int, parent: int | None, shown: ShownChanges) -> str:
    """The whole report, as `thumbtune diff` prints it."""
    record = shown.record
    gate = record.gate
    decision = "passed the gate" if gate.passed else "rejected: " + "; ".join(gate.reasons)
    lines = [f"version {version} (from version {parent}): {decision}", summary(record), ""]
    counts = record.data.counts
    lines.append(
        f"trained on {counts.get('train_examples', 0)} examples ({counts.get('desirable', 0)} liked, "
        f"{counts.get('undesirable', 0)} disliked), {counts.get('held_out_examples', 0)} held out"
    )
    for title, examples in (("most liked", shown.most_liked), ("most disliked", shown.most_disliked)):
        lines.extend(f"  {title}: {example.question!r} -> {example.answer!r}" for example in examples)
    weights = record.data.implicit_weights
    if weights:
        lines.append("implicit signals, as this run weighed them (agreement with votes on the same answers):")
        lines.extend("  " + line for line in agreement.table(weights).splitlines())
    else:
        lines.append(f"implicit signals: {agreement.missing(weights)}")
    metrics = gate.metrics
    shown_metrics = (
        "perplexity",
        "parent_perplexity",
        "base_perplexity",
        "perplexity_ratio",
        "base_perplexity_ratio",
        "preference_accuracy",
        "parent_preference_accuracy",
        "preference_difference",
        "distinct_2",
        "chrf_difference",
    )
    numbers = [_metric(name, metrics) for name in shown_metrics if _metric(name, metrics)]
    if numbers:
        lines.append("gate (95% intervals): " + ", ".join(numbers))
    notes = metrics.get("not_enough_data")
    if isinstance(notes, list):
        lines.extend(f"  not enough data: {note}" for note in notes)
    lines.append("")
    for answer in shown.answers[:SHOWN_ANSWERS]:
        lines.append(f"{'*' if answer.changed else ' '} {answer.question}")
        lines.append(f"    before: {answer.before}")
        lines.append(f"    after:  {answer.after}")
    return "\n".join(lines)


def _words(changes: ChangesRecord) -> str:
    rose = ", ".join(item.token for item in changes.words.rose[:4]) or "-"
    fell = ", ".join(item.token for item in changes.words.fell[:4]) or "-"
    return f"More likely now: {rose}; less likely: {fell}."


def _metric(name: str, metrics: dict[str, Any]) -> str:
    """``name 0.81 (0.7-0.9)``, the interval when there is one; "" when neither is there."""
    value, interval = metrics.get(name), metrics.get(f"{name}_interval")
    text = f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    if isinstance(interval, list) and len(interval) == 2:
        text = f"{text} ({interval[0]:.3g}-{interval[1]:.3g})".strip()
    return f"{name} {text}" if text else ""
