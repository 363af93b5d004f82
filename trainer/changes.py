"""What a new version learned, computed at the end of its run and kept with it (``changes.json``).

- **answers**: the parent's and the new version's answers side by side on a fixed set of
  prompts (the questions of the reference text, then held-out prompts), each model
  sampled with the same seed, and the share of prompts whose answer changed;
- **words**: the tokens of the reference text whose log-probability rose or fell most
  (mean change per token, over the tokens seen at least twice);
- **data**: the training counts, each implicit signal kind's agreement with the votes and
  the weight the run gave it (``implicit_weights``, as the bot built the dataset), and a few
  of the most liked and disliked examples (the question and the answer only: no person key,
  no conversation id);

the texts (the examples come scrubbed in the snapshot; the models' answers are new) are
passed through ``redact`` (storage.redact, the kinds the bot's snapshot names), so a secret
a model repeats is not written here either;
- **gate**: its metrics, the decision and the reasons.

``thumbtune diff`` prints it and the announcement of a new version carries two lines of
it (bot.changes).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from storage.dialogue import USER
from trainer.dataset import Example, FeedbackDataset
from trainer.evaluate import GateResult, probe_prompts, probe_questions, reference_text, sample_answers, token_logprobs

FILE = "changes.json"
PROMPTS = 24  # fixed prompts compared (reference questions first, then held-out ones)
WORDS = 8  # tokens listed as rising and as falling
EXAMPLES = 3  # liked and disliked training examples shown


def what_changed(
    *,
    parent: PreTrainedModel,
    candidate: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: FeedbackDataset,
    gate: GateResult,
    seed: int,
    max_new_tokens: int,
    redact: Callable[[str], str],
) -> dict[str, Any]:
    prompts, references = _fixed_prompts(dataset.held_out)
    before = [
        redact(answer)
        for answer in sample_answers(parent, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed)
    ]
    after = [
        redact(answer)
        for answer in sample_answers(candidate, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed)
    ]
    rose, fell = _word_shifts(parent, candidate, tokenizer, reference_text())
    ranked = sorted(dataset.train, key=lambda example: example.reward)
    return {
        "answers": [
            {
                "question": redact(_question(prompt)),
                "before": old,
                "after": new,
                # The reference set is the project's text; a held-out prompt is a person's (the
                # dashboard hides it once retention or `forget me` removed it from the database).
                "source": "reference" if i < references else "held_out",
            }
            for i, (prompt, old, new) in enumerate(zip(prompts, before, after, strict=True))
        ],
        "changed_share": round(sum(old != new for old, new in zip(before, after, strict=True)) / len(prompts), 4)
        if prompts
        else 0.0,
        "words": {"rose": rose, "fell": fell},
        "data": {
            "counts": dataset.counts(),
            "implicit_weights": [dataclasses.asdict(agreement) for agreement in dataset.implicit_weights],
            "most_liked": [_shown(example, redact) for example in reversed(ranked[-EXAMPLES:]) if example.label],
            "most_disliked": [_shown(example, redact) for example in ranked[:EXAMPLES] if not example.label],
        },
        "gate": {"passed": gate.passed, "reasons": list(gate.reasons), "metrics": gate.metrics()},
    }


def _fixed_prompts(held_out: Sequence[Example]) -> tuple[list[str], int]:
    """The prompts compared, and how many of them (first) come from the reference set."""
    prompts = probe_prompts(min(PROMPTS, len(probe_questions())))  # each reference question once
    references = len(prompts)
    seen = set(prompts)
    for example in held_out:
        if len(prompts) >= PROMPTS:
            break
        if example.prompt not in seen:
            seen.add(example.prompt)
            prompts.append(example.prompt)
    return prompts, references


def _word_shifts(
    parent: PreTrainedModel,
    candidate: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tokens whose log-probability on ``text`` rose and fell most (mean over their occurrences)."""
    tokens, after = token_logprobs(candidate, tokenizer, text)
    _, before = token_logprobs(parent, tokenizer, text)
    shifts: dict[int, list[float]] = defaultdict(list)
    for token, change in zip(tokens.tolist(), (after - before).tolist(), strict=True):
        shifts[token].append(change)
    means = [
        (sum(changes) / len(changes), token, len(changes)) for token, changes in shifts.items() if len(changes) >= 2
    ]
    means.sort()

    def shown(items: Sequence[tuple[float, int, int]]) -> list[dict[str, Any]]:
        return [{"token": _token_text(tokenizer, token), "change": round(mean, 4)} for mean, token, _ in items]

    rose = shown([item for item in reversed(means) if item[0] > 0][:WORDS])
    fell = shown([item for item in means if item[0] < 0][:WORDS])
    return rose, fell


def _token_text(tokenizer: PreTrainedTokenizerBase, token: int) -> str:
    text = str(tokenizer.decode([token]))
    return text.strip() or repr(text)  # a space or a newline is shown as such


def _question(prompt: str) -> str:
    """The last question of a rendered dialogue prompt (what the person asked)."""
    lines = [line[len(USER) :].strip() for line in prompt.splitlines() if line.startswith(USER)]
    return lines[-1] if lines else prompt.strip()


def _shown(example: Example, redact: Callable[[str], str]) -> dict[str, Any]:
    return {
        "question": redact(_question(example.prompt)),
        "answer": redact(example.completion.strip()),
        "reward": example.reward,
    }
