"""The eval gate: a new version becomes current only if it did not get worse than its parent.

Checks, each against the parent on the same data and sampling seed, each with its
uncertainty (seeded bootstrap, 95 % intervals), and a metric with too little data
behind it reported as "not enough data" instead of deciding on noise:

(a) held-out preference: a model's implicit reward r(x, y) = log p_model(y|x) - log p_base(y|x)
    (base = version 0) should rank held-out liked answers above disliked ones (share
    of liked x disliked pairs ranked right, an AUC) at least as often as the parent's does;
    the base model itself scores 0.5, every reward being 0. Paired: both models on the same
    resampled examples. Rejected only when the drop is larger than the margin *and* the
    interval of the difference lies below 0; under ``min_preference_examples`` liked or
    disliked held-out answers: not enough data;
(b) perplexity on the reference text shipped in ``trainer/data/reference.txt``: fluency
    must not collapse, against the parent *and* against version 0 (slow drift over many
    versions), with the interval of the ratio (block bootstrap over the text);
(c) diversity of answers sampled for varied questions, against the parent *and* against
    version 0 (so a drop cannot compound over versions): the share of distinct answers and
    distinct-2 must stay above ``distinct_ratio`` of both, and no one answer may make up more
    than ``max_top_share`` of them (or ``top_share_factor`` x version 0's share, when version
    0 repeats itself more than that);
(d) chrF of answers sampled for held-out corrected prompts against the people's
    corrections (paired bootstrap over corrections; under ``min_corrections``: not
    enough data);
(e) relevance: answers must stay on the question asked. Judged by version 0, an answer should
    be likelier after its own question than after other questions (the mean of
    log p0(answer | its question) - log p0(answer | another question), in nats, a pointwise
    mutual information): a model that says one sentence to every question scores about 0.
    It must stay above ``relevance_ratio`` of the parent's and of version 0's own answers'.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import torch
from sacrebleu.metrics import CHRF
from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from storage.dialogue import USER, ModelDialogue, render_prompt, stop_token_ids
from trainer.config import GateConfig
from trainer.dataset import Example, Pair

# Caps on what the preference check scores, so a big held-out set stays quick: liked and
# disliked answers each (a seeded sample beyond it).
_MAX_PER_SIDE = 300
_BLOCK_TOKENS = 32  # the perplexity bootstrap resamples blocks of this many tokens
LEVEL = 0.95


def reference_text() -> str:
    return resources.files("trainer.data").joinpath("reference.txt").read_text(encoding="utf-8")


def probe_questions() -> list[str]:
    """The distinct questions of the reference text, in order."""
    questions = [line[len(USER) :].strip() for line in reference_text().splitlines() if line.startswith(USER)]
    return list(dict.fromkeys(questions))


def probe_prompts(limit: int) -> list[str]:
    """``limit`` questions from the reference text (in turn, again from the first when there
    are fewer), as the bot would prompt with them."""
    questions = probe_questions()
    return [render_prompt(questions[i % len(questions)]) for i in range(limit)]


@dataclass(frozen=True)
class ModelScores:
    """What the gate measures on one model."""

    perplexity: float
    distinct_2: float
    chrf: float | None  # None without held-out corrections
    distinct_answers: float = 1.0  # share of the sampled answers that are distinct
    top_share: float = 0.0  # share of the sampled answers that are the most common one (0: none repeats)
    relevance: float | None = None  # question-answer PMI judged by version 0 (nats); None: not measured

    def as_dict(self, prefix: str) -> dict[str, float | None]:
        return {
            f"{prefix}perplexity": self.perplexity,
            f"{prefix}distinct_2": self.distinct_2,
            f"{prefix}distinct_answers": round(self.distinct_answers, 4),
            f"{prefix}top_share": round(self.top_share, 4),
            f"{prefix}relevance": None if self.relevance is None else round(self.relevance, 4),
            f"{prefix}chrf": self.chrf,
        }


@dataclass(frozen=True)
class GateResult:
    candidate: ModelScores
    parent: ModelScores
    preference_accuracy: float | None  # None: not enough held-out liked and disliked answers
    parent_preference_accuracy: float | None
    preference_pairs: int
    reasons: tuple[str, ...]  # empty: passed
    base_perplexity: float | None = None  # version 0's, for drift
    base: ModelScores | None = None  # version 0's scores, the floor no version may fall through
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95 %, by metric name
    not_enough_data: tuple[str, ...] = ()  # checks that were not applied, and why

    @property
    def passed(self) -> bool:
        return not self.reasons

    def metrics(self) -> dict[str, float | int | list[float] | list[str] | None]:
        numbers: dict[str, float | int | list[float] | list[str] | None] = {
            **self.candidate.as_dict(""),
            **self.parent.as_dict("parent_"),
            "base_perplexity": self.base_perplexity,
            **({} if self.base is None else {k: v for k, v in self.base.as_dict("base_").items() if k != "base_chrf"}),
            "preference_accuracy": self.preference_accuracy,
            "parent_preference_accuracy": self.parent_preference_accuracy,
            "preference_pairs": self.preference_pairs,
        }
        for name, (low, high) in self.intervals.items():
            numbers[f"{name}_interval"] = [round(low, 4), round(high, 4)]
        if self.not_enough_data:
            numbers["not_enough_data"] = list(self.not_enough_data)
        return numbers


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
    """Sum of log p(completion | prompt) for each (prompt, completion) of a stored dialogue,
    shown to the model as the bot shows it (a chat template's turn end is part of the completion)."""
    device = next(model.parameters()).device
    dialogue = ModelDialogue(tokenizer)
    out: list[float] = []
    for start in range(0, len(items), batch_size):
        batch = dialogue.answer_batch(items[start : start + batch_size], max_length=max_length)
        ids = batch.ids.to(device)
        logits = model(input_ids=ids, attention_mask=batch.mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for i, (begin, end) in enumerate(zip(batch.starts, batch.lengths, strict=True)):
            out.append(float(logp[i, begin - 1 : end - 1].sum()))
    return out


@torch.no_grad()
def token_logprobs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, *, window: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids, log p of each given what precedes it in its window) over ``text``, in
    non-overlapping windows (the first token of each window is context only)."""
    device = next(model.parameters()).device
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    limit = min(window, int(getattr(model.config, "n_positions", window) or window))
    tokens, logprobs = [], []
    for start in range(0, len(ids) - 1, limit):
        chunk = ids[start : start + limit]
        if len(chunk) < 2:
            break
        logits = model(input_ids=chunk.unsqueeze(0).to(device)).logits.float()[0, :-1]
        target = chunk[1:].to(device)
        logprobs.append(torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1).cpu())
        tokens.append(chunk[1:])
    if not tokens:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(tokens), torch.cat(logprobs)


def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, *, window: int = 256) -> float:
    """Token perplexity of ``text``, in non-overlapping windows."""
    return perplexity_of(token_logprobs(model, tokenizer, text, window=window)[1])


def perplexity_of(logprobs: torch.Tensor) -> float:
    """exp(mean negative log-prob); infinite for no tokens or a NaN (a diverged model)."""
    value = math.exp(-float(logprobs.mean())) if len(logprobs) else math.inf
    return value if math.isfinite(value) else math.inf


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
    """One sampled answer per prompt (stored dialogues), shown to the model and cut as the
    bot does it (one left-padded batch)."""
    if not prompts:
        return []
    if not isinstance(model, GenerationMixin):
        raise TypeError(f"{type(model).__name__} cannot generate: the gate needs a causal language model")
    device = next(model.parameters()).device
    dialogue = ModelDialogue(tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(
            [dialogue.prompt(prompt) for prompt in prompts],
            return_tensors="pt",
            padding=True,
            add_special_tokens=dialogue.add_special_tokens,
        ).to(device)
    finally:
        tokenizer.padding_side = side
    torch.manual_seed(seed)
    was_training = model.training
    model.train(False)  # eval mode, restored below
    output = model.generate(
        **encoded,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=sorted(stop_token_ids(tokenizer, model.generation_config)),
    )
    model.train(was_training)
    new = output[:, encoded["input_ids"].shape[1] :]
    return [dialogue.answer(text) for text in tokenizer.batch_decode(new, skip_special_tokens=True)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Unique n-grams / all n-grams over the answers (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def distinct_answers(texts: Sequence[str]) -> float:
    """Share of the answers that are distinct (case and spacing aside); 0 for none."""
    return len({_normal(t) for t in texts}) / len(texts) if texts else 0.0


def top_share(texts: Sequence[str]) -> float:
    """Share of the answers that are the most common one; 0 when no answer repeats."""
    if not texts:
        return 0.0
    count = Counter(_normal(t) for t in texts).most_common(1)[0][1]
    return count / len(texts) if count > 1 else 0.0


RELEVANCE_CONTRASTS = 3  # other questions each answer is scored after


def relevance(
    judge: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    *,
    max_length: int = 256,
) -> float:
    """How much the answers belong to their own questions, judged by ``judge`` (version 0):
    mean over answers of log p(answer | its prompt) - mean log p(answer | another prompt), in
    nats. The other prompts are the next ``RELEVANCE_CONTRASTS`` distinct ones in the list.
    One answer said to every question scores about 0; on-topic answers score above it."""
    distinct = list(dict.fromkeys(prompts))
    if len(distinct) < 2 or not answers:
        return 0.0
    place = {prompt: i for i, prompt in enumerate(distinct)}
    shifts = range(1, min(RELEVANCE_CONTRASTS, len(distinct) - 1) + 1)
    items = list(zip(prompts, answers, strict=True))
    for shift in shifts:
        items += [(distinct[(place[p] + shift) % len(distinct)], a) for p, a in zip(prompts, answers, strict=True)]
    logps = np.array(completion_logprobs(judge, tokenizer, items, max_length=max_length)).reshape(-1, len(answers))
    return float((logps[0] - logps[1:].mean(axis=0)).mean())


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def pairwise_wins(liked: np.ndarray, disliked: np.ndarray) -> np.ndarray:
    """liked x disliked: 1 where the liked answer's reward is higher, 1/2 on a tie, else 0."""
    wins: np.ndarray = (liked[:, None] > disliked[None, :]) + 0.5 * (liked[:, None] == disliked[None, :])
    return wins


def paired_auc_difference(
    new: tuple[np.ndarray, np.ndarray],
    old: tuple[np.ndarray, np.ndarray],
    *,
    samples: int,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """95 % percentile-bootstrap intervals of the new and old AUCs and of their difference,
    resampling liked and disliked answers (the same draws for both models)."""
    rng = np.random.default_rng(seed)
    n_liked, n_disliked = len(new[0]), len(new[1])
    # A resample is a count per answer (multinomial), so an AUC is w' M v / (n_liked n_disliked).
    w = rng.multinomial(n_liked, np.full(n_liked, 1 / n_liked), size=samples).astype(float)
    v = rng.multinomial(n_disliked, np.full(n_disliked, 1 / n_disliked), size=samples).astype(float)

    def aucs(liked: np.ndarray, disliked: np.ndarray) -> np.ndarray:
        weighted: np.ndarray = np.einsum("bi,ij,bj->b", w, pairwise_wins(liked, disliked), v)
        return weighted / (n_liked * n_disliked)

    a, b = aucs(*new), aucs(*old)
    return {
        "preference_accuracy": _percentile_interval(a),
        "parent_preference_accuracy": _percentile_interval(b),
        "preference_difference": _percentile_interval(a - b),
    }


def _percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _log_ratio_interval(new: torch.Tensor, old: torch.Tensor, *, samples: int, seed: int) -> tuple[float, float] | None:
    """95 % interval of perplexity(new) / perplexity(old) on the same tokens: a block
    bootstrap (neighbouring tokens are not independent) of the mean log-prob difference."""
    gap = (old - new).numpy().astype(float)  # > 0 where the new model finds the token less likely
    blocks = len(gap) // _BLOCK_TOKENS
    if blocks < 2:
        return None
    means = gap[: blocks * _BLOCK_TOKENS].reshape(blocks, _BLOCK_TOKENS).mean(axis=1)
    draws = np.random.default_rng(seed).integers(0, blocks, size=(samples, blocks))
    low, high = _percentile_interval(means[draws].mean(axis=1))
    return math.exp(low), math.exp(high)


# --- the gate -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Measured:
    scores: ModelScores
    reference_logprobs: torch.Tensor  # per token of the reference text
    corrected: list[str]  # answers sampled for the held-out corrected prompts
    answers: list[str]  # answers sampled for the probe questions


def _measure(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    corrections: Sequence[Pair],
    config: GateConfig,
    seed: int,
) -> _Measured:
    def sample(prompts: Sequence[str]) -> list[str]:
        try:
            return sample_answers(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens, seed=seed)
        except RuntimeError:  # e.g. NaN weights after a diverged run: it answers nothing
            return ["" for _ in prompts]

    answers = sample(probe_prompts(config.samples))
    corrected = sample([p.prompt for p in corrections]) if corrections else []
    _, logprobs = token_logprobs(model, tokenizer, reference_text())
    fluency = perplexity_of(logprobs)
    score = chrf(corrected, [p.chosen.strip() for p in corrections]) if corrections else None
    scores = ModelScores(
        perplexity=fluency,
        distinct_2=distinct_n(answers),
        chrf=score,
        distinct_answers=distinct_answers(answers),
        top_share=top_share(answers),
    )
    return _Measured(scores, logprobs, corrected, answers)


def _with_relevance(
    measured: _Measured, judge: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: GateConfig, max_length: int
) -> _Measured:
    if config.relevance_ratio <= 0:
        return measured
    score = relevance(judge, tokenizer, probe_prompts(config.samples), measured.answers, max_length=max_length)
    return dataclasses.replace(measured, scores=dataclasses.replace(measured.scores, relevance=score))


@dataclass
class _Findings:
    """What the gate's checks found, in the order they ran."""

    reasons: list[str] = field(default_factory=list)  # why the candidate fails; empty: it passes
    not_enough: list[str] = field(default_factory=list)  # checks not applied, and why
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95 %, by metric name


def run_gate(  # noqa: PLR0913  the models compared, the held-out data and the gate's config, by keyword
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
    corrections = [p for p in held_out_pairs if p.source == "correction"][: config.samples]
    new = _measure(candidate, tokenizer, corrections=corrections, config=config, seed=seed)
    old = _measure(parent, tokenizer, corrections=corrections, config=config, seed=seed)
    judge = parent if base is None else base  # version 0 judges relevance
    new, old = (_with_relevance(m, judge, tokenizer, config, max_length) for m in (new, old))
    zero = old
    if base is not None:
        zero = _measure(base, tokenizer, corrections=[], config=config, seed=seed)
        zero = _with_relevance(zero, judge, tokenizer, config, max_length)
    found = _Findings()

    # (a) held-out preference, paired.
    liked, disliked = (
        _capped([e for e in held_out if e.label], seed),
        _capped([e for e in held_out if not e.label], seed),
    )
    n_pairs = len(liked) * len(disliked)
    accuracy = parent_accuracy = None
    need = config.min_preference_examples
    if len(liked) < need or len(disliked) < need:
        found.not_enough.append(
            f"held-out preference: {len(liked)} liked and {len(disliked)} disliked held-out answers "
            f"({need} of each needed)"
        )
    else:
        items = [(e.prompt, e.completion) for e in (*liked, *disliked)]
        new_r, old_r = _implicit_rewards(
            items, tokenizer, candidate=candidate, parent=parent, base=base, max_length=max_length
        )
        accuracy, parent_accuracy = _check_preference(found, new_r, old_r, cut=len(liked), config=config, seed=seed)

    # (b) fluency, against the parent and against version 0.
    _check_fluency(found, new, old, zero, config=config, seed=seed)

    # (c) diversity, against the parent and against version 0; (e) relevance, the same way.
    found.reasons += diversity_reasons(new.scores, old.scores, zero.scores, config)

    # (d) corrections, paired.
    _check_corrections(found, new, old, corrections, config=config, seed=seed)
    return GateResult(
        new.scores,
        old.scores,
        accuracy,
        parent_accuracy,
        n_pairs if accuracy is not None else 0,
        tuple(found.reasons),
        base_perplexity=perplexity_of(zero.reference_logprobs),
        base=zero.scores if base is not None else None,
        intervals=found.intervals,
        not_enough_data=tuple(found.not_enough),
    )


def _implicit_rewards(
    items: Sequence[tuple[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    candidate: PreTrainedModel,
    parent: PreTrainedModel,
    base: PreTrainedModel | None,
    max_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's and the parent's implicit reward of each (prompt, answer): its log
    probability over version 0's (over the parent's own when there is no ``base``)."""

    def logps(model: PreTrainedModel) -> np.ndarray:
        return np.array(completion_logprobs(model, tokenizer, items, max_length=max_length))

    new_lp, old_lp = logps(candidate), logps(parent)
    base_lp = old_lp if base is None else logps(base)
    return new_lp - base_lp, old_lp - base_lp


def _check_preference(
    found: _Findings, new_r: np.ndarray, old_r: np.ndarray, *, cut: int, config: GateConfig, seed: int
) -> tuple[float, float]:
    """(a) How often each model rewards a liked answer over a disliked one (the rewards before
    ``cut`` are of liked answers, the rest of disliked ones); clearly worse than the parent fails."""
    accuracy = float(pairwise_wins(new_r[:cut], new_r[cut:]).mean())
    parent_accuracy = float(pairwise_wins(old_r[:cut], old_r[cut:]).mean())
    found.intervals.update(
        paired_auc_difference(
            (new_r[:cut], new_r[cut:]), (old_r[:cut], old_r[cut:]), samples=config.bootstrap_samples, seed=seed
        )
    )
    low, high = found.intervals["preference_difference"]
    if accuracy - parent_accuracy < -config.preference_margin and high < 0:
        found.reasons.append(
            f"held-out preference accuracy {accuracy:.2f} < parent {parent_accuracy:.2f} - "
            f"{config.preference_margin} (difference 95% interval {low:+.2f} to {high:+.2f})"
        )
    return accuracy, parent_accuracy


def _check_fluency(
    found: _Findings, new: _Measured, old: _Measured, zero: _Measured, *, config: GateConfig, seed: int
) -> None:
    """(b) The reference text's perplexity, against the parent's and against version 0's."""
    base_logprobs = zero.reference_logprobs
    base_perplexity = perplexity_of(base_logprobs)
    for name, other in (("perplexity_ratio", old.reference_logprobs), ("base_perplexity_ratio", base_logprobs)):
        if len(other) == len(new.reference_logprobs):
            interval = _log_ratio_interval(new.reference_logprobs, other, samples=config.bootstrap_samples, seed=seed)
            if interval is not None:
                found.intervals[name] = interval
    if (
        not math.isfinite(new.scores.perplexity)
        or new.scores.perplexity > old.scores.perplexity * config.perplexity_ratio
    ):
        found.reasons.append(
            f"reference perplexity {new.scores.perplexity:.1f} > {config.perplexity_ratio} x parent "
            f"{old.scores.perplexity:.1f}"
        )
    elif new.scores.perplexity > base_perplexity * config.perplexity_ratio:
        found.reasons.append(
            f"reference perplexity {new.scores.perplexity:.1f} > {config.perplexity_ratio} x version 0's "
            f"{base_perplexity:.1f} (drift over versions)"
        )


def _check_corrections(
    found: _Findings, new: _Measured, old: _Measured, corrections: Sequence[Pair], *, config: GateConfig, seed: int
) -> None:
    """(d) chrF of the answers to corrected prompts against the corrections, paired with the parent's."""
    if corrections and len(corrections) < config.min_corrections:
        found.not_enough.append(f"chrF: {len(corrections)} held-out corrections ({config.min_corrections} needed)")
    elif corrections and new.scores.chrf is not None and old.scores.chrf is not None:
        references = [p.chosen.strip() for p in corrections]
        found.intervals["chrf_difference"] = _paired_chrf_interval(
            new.corrected, old.corrected, references, samples=max(1, config.bootstrap_samples // 5), seed=seed
        )
        low, high = found.intervals["chrf_difference"]
        if new.scores.chrf < old.scores.chrf - config.chrf_margin and high < 0:
            found.reasons.append(
                f"chrF vs corrections {new.scores.chrf:.1f} < parent {old.scores.chrf:.1f} - {config.chrf_margin} "
                f"(difference 95% interval {low:+.1f} to {high:+.1f})"
            )


def diversity_reasons(new: ModelScores, parent: ModelScores, zero: ModelScores, config: GateConfig) -> list[str]:
    """Why ``new`` says less varied or less relevant things than its parent or version 0
    (``zero``); each floor is checked against both, so a drop cannot compound over versions."""
    reasons = []
    ratio = config.distinct_ratio
    for label, name in (("distinct answers", "distinct_answers"), ("distinct-2", "distinct_2")):
        mine = getattr(new, name)
        for who, other in (("parent", getattr(parent, name)), ("version 0's", getattr(zero, name))):
            if mine < other * ratio:
                reasons.append(f"{label} {mine:.2f} < {ratio} x {who} {other:.2f} (collapse onto a few answers)")
                break
    limit = max(config.max_top_share, config.top_share_factor * zero.top_share)
    if new.top_share > limit:
        reasons.append(
            f"one answer is {new.top_share:.0%} of the sampled answers (limit {limit:.0%}: max_top_share "
            f"{config.max_top_share}, or {config.top_share_factor} x version 0's {zero.top_share:.0%})"
        )
    if new.relevance is not None and config.relevance_ratio > 0:
        for who, other in (("parent", parent.relevance), ("version 0's", zero.relevance)):
            if other is not None and other > 0 and new.relevance < other * config.relevance_ratio:
                reasons.append(
                    f"relevance {new.relevance:.2f} < {config.relevance_ratio} x {who} {other:.2f} "
                    "(answers no longer depend on the question asked)"
                )
                break
    return reasons


def _capped(examples: list[Example], seed: int) -> list[Example]:
    """At most ``_MAX_PER_SIDE`` examples: a seeded sample of a bigger held-out set."""
    if len(examples) <= _MAX_PER_SIDE:
        return examples
    keep = sorted(np.random.default_rng(seed).choice(len(examples), _MAX_PER_SIDE, replace=False).tolist())
    return [examples[i] for i in keep]


def _paired_chrf_interval(
    new: Sequence[str], old: Sequence[str], references: Sequence[str], *, samples: int, seed: int
) -> tuple[float, float]:
    """95 % bootstrap interval of chrF(new) - chrF(old), resampling the same corrections for both."""
    rng = np.random.default_rng(seed)
    metric = CHRF()
    gaps = []
    for draw in rng.integers(0, len(references), size=(samples, len(references))):
        refs = [[references[i] for i in draw]]
        gaps.append(
            metric.corpus_score([new[i] for i in draw], refs).score
            - metric.corpus_score([old[i] for i in draw], refs).score
        )
    return _percentile_interval(np.array(gaps))
