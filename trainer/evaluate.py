"""The eval gate: a new version becomes current only if it did not get worse than its parent.

Four checks, each against the parent on the same data and sampling seed:

(a) held-out preference: a model's implicit reward r(x, y) = log p_model(y|x) - log p_base(y|x)
    (base = version 0) should rank held-out liked answers above disliked ones (share
    of liked x disliked pairs ranked right) at least as often as the parent's does;
    the base model itself scores 0.5, every reward being 0;
(b) perplexity on the reference text shipped in ``trainer/data/reference.txt``: fluency
    must not collapse;
(c) distinct-2 of sampled answers: the model must not collapse onto one phrase;
(d) chrF of answers sampled for held-out corrected prompts against the people's
    corrections, when there are any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import torch
from sacrebleu.metrics import CHRF
from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from storage.dialogue import USER, cut_answer, render_prompt
from trainer.config import GateConfig
from trainer.dataset import Example, Pair

# Cap on liked x disliked pairs scored, so a big held-out set stays quick.
_MAX_PAIRS = 2000


def reference_text() -> str:
    return resources.files("trainer.data").joinpath("reference.txt").read_text(encoding="utf-8")


def probe_prompts(limit: int) -> list[str]:
    """Questions from the reference text, as the bot would prompt with them."""
    questions = [line[len(USER) :].strip() for line in reference_text().splitlines() if line.startswith(USER)]
    return [render_prompt(question) for question in questions[:limit]]


@dataclass(frozen=True)
class ModelScores:
    """What the gate measures on one model."""

    perplexity: float
    distinct_2: float
    chrf: float | None  # None without held-out corrections

    def as_dict(self, prefix: str) -> dict[str, float | None]:
        return {
            f"{prefix}perplexity": self.perplexity,
            f"{prefix}distinct_2": self.distinct_2,
            f"{prefix}chrf": self.chrf,
        }


@dataclass(frozen=True)
class GateResult:
    candidate: ModelScores
    parent: ModelScores
    preference_accuracy: float | None  # None: too few held-out pairs
    parent_preference_accuracy: float | None
    preference_pairs: int
    reasons: tuple[str, ...]  # empty: passed

    @property
    def passed(self) -> bool:
        return not self.reasons

    def metrics(self) -> dict[str, float | int | None]:
        return {
            **self.candidate.as_dict(""),
            **self.parent.as_dict("parent_"),
            "preference_accuracy": self.preference_accuracy,
            "parent_preference_accuracy": self.parent_preference_accuracy,
            "preference_pairs": self.preference_pairs,
        }


# --- measurements -------------------------------------------------------------------
@torch.no_grad()
def completion_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[tuple[str, str]],
    *,
    max_length: int = 256,
    batch_size: int = 8,
) -> list[float]:
    """Sum of log p(completion | prompt) for each (prompt, completion)."""
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(items), batch_size):
        rows, starts = [], []
        for prompt, completion in items[start : start + batch_size]:
            prompt_ids = tokenizer(prompt)["input_ids"]
            full = tokenizer(prompt + completion)["input_ids"]
            begin = _common_prefix(prompt_ids, full)
            cut = max(0, len(full) - max_length)  # keep the answer, drop the oldest context
            rows.append(full[cut:])
            starts.append(max(begin - cut, 1))
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        for i, row in enumerate(rows):
            out.append(float(logp[i, starts[i] - 1 : len(row) - 1].sum()))
    return out


@torch.no_grad()
def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, *, window: int = 256) -> float:
    """Token perplexity of ``text``, in non-overlapping windows."""
    device = next(model.parameters()).device
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    limit = min(window, int(getattr(model.config, "n_positions", window) or window))
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, limit):
        chunk = ids[start : start + limit].unsqueeze(0).to(device)
        if chunk.shape[1] < 2:
            break
        loss = model(input_ids=chunk, labels=chunk).loss.float()
        n = chunk.shape[1] - 1
        total += float(loss) * n
        count += n
    return math.exp(total / max(count, 1))


@torch.no_grad()
def sample_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    seed: int,
    temperature: float = 0.9,
    top_p: float = 0.95,
) -> list[str]:
    """One sampled answer per prompt, cut like the bot cuts them (one left-padded batch)."""
    if not prompts:
        return []
    if not isinstance(model, GenerationMixin):
        raise TypeError(f"{type(model).__name__} cannot generate: the gate needs a causal language model")
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(list(prompts), return_tensors="pt", padding=True).to(device)
    finally:
        tokenizer.padding_side = side
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    output = model.generate(
        **encoded,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.train(was_training)
    new = output[:, encoded["input_ids"].shape[1] :]
    return [cut_answer(text) for text in tokenizer.batch_decode(new, skip_special_tokens=True)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Unique n-grams / all n-grams over the answers (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def preference_accuracy(liked: Sequence[float], disliked: Sequence[float]) -> float:
    """Share of (liked, disliked) pairs where the liked answer has the higher reward (ties = 1/2)."""
    pairs = [(a, b) for a in liked for b in disliked][:_MAX_PAIRS]
    if not pairs:
        return 0.5
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


# --- the gate -----------------------------------------------------------------------
def score_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    corrections: Sequence[Pair],
    config: GateConfig,
    seed: int,
) -> ModelScores:
    def sample(prompts: Sequence[str]) -> list[str]:
        try:
            return sample_answers(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens, seed=seed)
        except RuntimeError:  # e.g. NaN weights after a diverged run: it answers nothing
            return ["" for _ in prompts]

    answers = sample(probe_prompts(config.samples))
    score = None
    if corrections:
        chosen = corrections[: config.samples]
        score = chrf(sample([p.prompt for p in chosen]), [p.chosen.strip() for p in chosen])
    return ModelScores(
        perplexity=perplexity(model, tokenizer, reference_text()),
        distinct_2=distinct_n(answers),
        chrf=score,
    )


def run_gate(
    *,
    candidate: PreTrainedModel,
    parent: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    base: PreTrainedModel | None = None,  # version 0, when the parent is a trained version
    held_out: Sequence[Example],
    held_out_pairs: Sequence[Pair],
    config: GateConfig,
    seed: int = 0,
    max_length: int = 256,
) -> GateResult:
    corrections = [p for p in held_out_pairs if p.source == "correction"]
    new = score_model(candidate, tokenizer, corrections=corrections, config=config, seed=seed)
    old = score_model(parent, tokenizer, corrections=corrections, config=config, seed=seed)

    liked = [e for e in held_out if e.label]
    disliked = [e for e in held_out if not e.label]
    n_pairs = min(len(liked) * len(disliked), _MAX_PAIRS)
    accuracy = parent_accuracy = None
    if n_pairs >= config.min_preference_pairs:
        items = [(e.prompt, e.completion) for e in (*liked, *disliked)]

        def logps(model: PreTrainedModel) -> list[float]:
            return completion_logprobs(model, tokenizer, items, max_length=max_length)

        new_lp, old_lp = logps(candidate), logps(parent)
        base_lp = old_lp if base is None else logps(base)

        def accuracy_of(lp: list[float]) -> float:
            rewards = [a - b for a, b in zip(lp, base_lp, strict=True)]
            return preference_accuracy(rewards[: len(liked)], rewards[len(liked) :])

        accuracy, parent_accuracy = accuracy_of(new_lp), accuracy_of(old_lp)

    reasons = []
    if accuracy is not None and parent_accuracy is not None and accuracy < parent_accuracy - config.preference_margin:
        reasons.append(
            f"held-out preference accuracy {accuracy:.2f} < parent {parent_accuracy:.2f} - {config.preference_margin}"
        )
    if not math.isfinite(new.perplexity) or new.perplexity > old.perplexity * config.perplexity_ratio:
        reasons.append(
            f"reference perplexity {new.perplexity:.1f} > {config.perplexity_ratio} x parent {old.perplexity:.1f}"
        )
    if new.distinct_2 < old.distinct_2 * config.distinct_ratio:
        reasons.append(f"distinct-2 {new.distinct_2:.2f} < {config.distinct_ratio} x parent {old.distinct_2:.2f}")
    if new.chrf is not None and old.chrf is not None and new.chrf < old.chrf - config.chrf_margin:
        reasons.append(f"chrF vs corrections {new.chrf:.1f} < parent {old.chrf:.1f} - {config.chrf_margin}")
    return GateResult(new, old, accuracy, parent_accuracy, n_pairs, tuple(reasons))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):  # up to the shorter one
        if x != y:
            break
        n += 1
    return n
