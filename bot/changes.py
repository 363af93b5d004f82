"""A version's "what changed" (written by the trainer, trainer.changes) for people: the
two lines of a new version's announcement, and ``thumbtune diff``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SHOWN_ANSWERS = 8  # answer pairs printed by `thumbtune diff` (all of them with --json)
HIDDEN = "(text no longer kept)"


def quoted_questions(changes: dict[str, Any]) -> list[str]:
    """The people's prompts a version's report quotes (reference prompts are the project's own)."""
    data = changes["data"]
    quoted = [example["question"] for key in ("most_liked", "most_disliked") for example in data[key]]
    quoted += [answer["question"] for answer in changes["answers"] if answer["source"] != "reference"]
    return quoted


def for_people(changes: dict[str, Any], kept: set[str], redact: Callable[[str], str] = str) -> dict[str, Any]:
    """The report as people may see it: a person's prompt quoted in it (with the answers to
    it) is shown only while the database still holds it (``kept``: see
    Repository.kept_prompts); blanked by retention or deleted by `forget me`, it reads
    :data:`HIDDEN` and the answer is marked ``hidden``. Every text shown goes through
    ``redact`` (THUMBTUNE_REDACT), so a report written before scrubbing shows no secret."""
    data = changes["data"]

    def example(item: dict[str, Any]) -> dict[str, Any]:
        if item["question"] not in kept:
            return {**item, "question": HIDDEN, "answer": HIDDEN, "hidden": True}
        return {**item, "question": redact(item["question"]), "answer": redact(item["answer"])}

    def answer(item: dict[str, Any]) -> dict[str, Any]:
        changed = item["before"] != item["after"]
        if item["source"] == "reference" or item["question"] in kept:
            texts = {name: redact(item[name]) for name in ("question", "before", "after")}
            return {**item, **texts, "changed": changed}
        hidden = {"question": HIDDEN, "before": HIDDEN, "after": HIDDEN, "hidden": True}
        return {**item, **hidden, "changed": changed}

    answers = [answer(item) for item in changes["answers"]]
    quoted = {key: [example(item) for item in data[key]] for key in ("most_liked", "most_disliked")}
    return {**changes, "answers": answers, "data": {**data, **quoted}}


def summary(changes: dict[str, Any]) -> str:
    """Two lines: how many fixed prompts it answers differently, and which words moved.

    ``changes`` as ModelRegistry.changes returns it (validated: storage.records)."""
    answers = changes.get("answers") or []
    changed = round(float(changes.get("changed_share", 0.0)) * len(answers))
    return f"It answers {changed} of {len(answers)} fixed prompts differently.\n{_words(changes)}"


def render(version: int, parent: int | None, changes: dict[str, Any]) -> str:
    """The whole report, as `thumbtune diff` prints it."""
    gate = changes.get("gate") or {}
    decision = "passed the gate" if gate.get("passed") else "rejected: " + "; ".join(gate.get("reasons") or [])
    lines = [f"version {version} (from version {parent}): {decision}", summary(changes), ""]
    data = changes.get("data") or {}
    counts = data.get("counts") or {}
    lines.append(
        f"trained on {counts.get('train_examples', 0)} examples ({counts.get('desirable', 0)} liked, "
        f"{counts.get('undesirable', 0)} disliked), {counts.get('held_out_examples', 0)} held out"
    )
    for title, key in (("most liked", "most_liked"), ("most disliked", "most_disliked")):
        for example in data.get(key) or []:
            lines.append(f"  {title}: {example['question']!r} -> {example['answer']!r}")
    metrics = gate.get("metrics") or {}
    shown = (
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
    numbers = [_metric(name, metrics) for name in shown if _metric(name, metrics)]
    if numbers:
        lines.append("gate (95% intervals): " + ", ".join(numbers))
    lines.extend(f"  not enough data: {note}" for note in metrics.get("not_enough_data") or [])
    lines.append("")
    for answer in (changes.get("answers") or [])[:SHOWN_ANSWERS]:
        mark = "*" if answer.get("changed", answer["before"] != answer["after"]) else " "
        lines.append(f"{mark} {answer['question']}")
        lines.append(f"    before: {answer['before']}")
        lines.append(f"    after:  {answer['after']}")
    return "\n".join(lines)


def _words(changes: dict[str, Any]) -> str:
    words = changes.get("words") or {}
    rose = ", ".join(item["token"] for item in (words.get("rose") or [])[:4]) or "-"
    fell = ", ".join(item["token"] for item in (words.get("fell") or [])[:4]) or "-"
    return f"More likely now: {rose}; less likely: {fell}."


def _metric(name: str, metrics: dict[str, Any]) -> str:
    """``name 0.81 (0.7-0.9)``, the interval when there is one; "" when neither is there."""
    value, interval = metrics.get(name), metrics.get(f"{name}_interval")
    text = f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    if isinstance(interval, list) and len(interval) == 2:
        text = f"{text} ({interval[0]:.3g}-{interval[1]:.3g})".strip()
    return f"{name} {text}" if text else ""
