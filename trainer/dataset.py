"""Votes -> training examples (pure functions, no I/O).

An answer's net reward is the sum of its votes' rewards (a retracted reaction is a
deleted vote, so it simply is not there). With thread credit on (``gamma > 0``) a
reward given to a later turn of the same conversation also credits the earlier
answers, discounted per turn: Q_t = R_t + sum_{k>t} gamma^(k-t) R_k. Q > 0 makes a
desirable example, Q < 0 an undesirable one, Q == 0 (a tie, or no votes) is skipped.

Corrections (a person's better answer) and compare-votes (candidates of the same
prompt rated differently) also give preference pairs (prompt, chosen, rejected).
KTO learns from unpaired labels, so pairs are unpaired into one desirable and one
undesirable example each (duplicates of the vote examples dropped).

Implicit signals (bot.implicit: a thanks or a complaint, a rephrase, a retry) add to an
answer's reward with a weight per kind fitted from the answers that also have votes
(:func:`signal_weights`: how often the kind agreed with people's own verdict), shrunk
towards a conservative default while there are few such answers. A kind that agrees no
better than chance weighs 0. An answer known only from implicit signals is trained on, never
held out (in a held-out conversation it is left out): the gate measures what people said
themselves. A retry also gives a pair: the
new answer preferred to the first.

Examples are split into train and held-out by a hash of their conversation (or of
the question's text, for a lone prompt), so a held-out conversation never leaks into
training and the split is stable from one run to the next. With fewer than
``min_split_groups`` conversations (one shell chat is one conversation until /new)
the split is by question text instead: otherwise nothing, or everything, would be held
out. Splitting by text, not by prompt, keeps a question asked twice on one side: a
held-out question is one no training example answered.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from storage.dialogue import ModelDialogue, clean, render_prompt
from storage.repository import SIGNAL_KINDS, CorrectionRow, FeedbackAnswer, SignalRow, VoteRow
from trainer.config import DataConfig

# Rewards are sums of small floats; treat anything this close to 0 as a tie.
_TIE = 1e-9


# Implicit signals: the weight of a kind with no answer to calibrate it on, how many
# calibrated answers count as much as that default, and the least weight a kind needs to be used.
DEFAULT_SIGNAL_WEIGHT = 0.3
PRIOR_ANSWERS = 10
MIN_SIGNAL_WEIGHT = 0.1


@dataclass(frozen=True)
class Agreement:
    """How one kind of implicit signal agreed with people's votes on the same answers."""

    kind: str
    answers: int  # answers that have this kind of signal and a non-zero net vote
    agreed: int  # of those, where the signal's sign is the votes' sign
    weight: float  # what one such signal adds to an answer's reward, times its value
    used: bool  # the weight reached MIN_SIGNAL_WEIGHT: training counts this kind

    @property
    def rate(self) -> float | None:
        return self.agreed / self.answers if self.answers else None


@dataclass(frozen=True)
class Example:
    """One unpaired KTO example: is ``completion`` a good answer to ``prompt``?"""

    prompt: str
    completion: str
    label: bool
    group: str  # split key: the conversation, or the lone prompt
    reward: float = 0.0  # the (credited) reward behind the label; 0 for a correction


@dataclass(frozen=True)
class Pair:
    """A preference pair in TRL's DPO shape."""

    prompt: str
    chosen: str
    rejected: str
    group: str
    source: str  # "correction", "compare" or "retry" (the same question asked again: the new answer preferred)


@dataclass(frozen=True)
class FeedbackDataset:
    train: tuple[Example, ...]
    held_out: tuple[Example, ...]
    train_pairs: tuple[Pair, ...]
    held_out_pairs: tuple[Pair, ...]
    implicit_examples: int = 0  # training examples labelled by implicit signals alone
    skipped_ties: int = 0  # answers with votes whose rewards cancel out
    excluded: int = 0  # answers left out: flagged, or by / about a forgotten person
    held_out_repeats: int = 0  # held-out answers left out: said word for word to the same prompt in training
    # Each implicit kind's agreement with the votes and the weight this dataset gave it
    # (:func:`signal_weights`); empty when the dataset was built without implicit signals.
    implicit_weights: tuple[Agreement, ...] = ()

    @property
    def desirable(self) -> int:
        return sum(example.label for example in self.train)

    @property
    def undesirable(self) -> int:
        return len(self.train) - self.desirable

    def counts(self) -> dict[str, int]:
        return {
            "train_examples": len(self.train),
            "desirable": self.desirable,
            "undesirable": self.undesirable,
            "train_pairs": len(self.train_pairs),
            "held_out_examples": len(self.held_out),
            "held_out_pairs": len(self.held_out_pairs),
            "implicit_examples": self.implicit_examples,
            "skipped_ties": self.skipped_ties,
            "excluded": self.excluded,
            "held_out_repeats": self.held_out_repeats,
        }


@dataclass(frozen=True)
class BuildOptions:
    gamma: float = DataConfig.gamma  # thread credit discount per turn; 0 = off
    held_out_fraction: float = DataConfig.held_out_fraction  # share of conversations kept for the eval gate
    split_salt: str = "thumbtune"  # changing it re-draws the split
    forgotten: frozenset[str] = field(default_factory=frozenset)  # person keys to leave out
    # Fewer conversations than this: split by prompt instead (a shell chat is one conversation).
    min_split_groups: int = 20


def net_rewards(votes: Iterable[VoteRow], *, forgotten: frozenset[str] = frozenset()) -> dict[int, float]:
    """response id -> sum of its votes' rewards (votes by forgotten people ignored)."""
    totals: dict[int, float] = defaultdict(float)
    for vote in votes:
        if vote.voter not in forgotten:
            totals[vote.response_id] += vote.reward
    return dict(totals)


def signal_weights(
    signals: Iterable[SignalRow], votes: Iterable[VoteRow], *, forgotten: frozenset[str] = frozenset()
) -> dict[str, Agreement]:
    """Each kind's agreement with people's votes on the same answers, and the weight it earns.

    The fitted weight is 2 * agreement - 1 (0 at chance, 1 when it always agrees), not below
    0; with n calibrated answers it is shrunk towards :data:`DEFAULT_SIGNAL_WEIGHT` as
    (n * fitted + PRIOR_ANSWERS * default) / (n + PRIOR_ANSWERS). Pure; tested on worked examples."""
    net = net_rewards(votes, forgotten=forgotten)
    answers: dict[str, int] = defaultdict(int)
    agreed: dict[str, int] = defaultdict(int)
    for signal in signals:
        reward = net.get(signal.response_id, 0.0)
        if signal.person in forgotten or abs(reward) <= _TIE or signal.value == 0:
            continue
        answers[signal.kind] += 1
        agreed[signal.kind] += (signal.value > 0) == (reward > 0)
    out = {}
    for kind in SIGNAL_KINDS:
        n = answers[kind]
        fitted = max(0.0, 2 * agreed[kind] / n - 1) if n else 0.0
        weight = (n * fitted + PRIOR_ANSWERS * DEFAULT_SIGNAL_WEIGHT) / (n + PRIOR_ANSWERS)
        weight = round(weight, 4)
        out[kind] = Agreement(
            kind=kind, answers=n, agreed=agreed[kind], weight=weight, used=weight >= MIN_SIGNAL_WEIGHT
        )
    return out


def implicit_rewards(
    signals: Iterable[SignalRow], weights: dict[str, Agreement], *, forgotten: frozenset[str] = frozenset()
) -> dict[int, float]:
    """response id -> the weighted sum of its implicit signals (kinds under MIN_SIGNAL_WEIGHT left out)."""
    totals: dict[int, float] = defaultdict(float)
    for signal in signals:
        agreement = weights.get(signal.kind)
        if agreement is None or not agreement.used or signal.person in forgotten:
            continue
        totals[signal.response_id] += agreement.weight * signal.value
    return dict(totals)


def credited_rewards(answers: Sequence[FeedbackAnswer], rewards: dict[int, float], *, gamma: float) -> dict[int, float]:
    """response id -> Q, the reward plus the discounted rewards of later turns of its conversation.

    A turn is one prompt; its reward is the sum over its candidates, since a person
    reacting to any of them is reacting to how the conversation went on.
    """
    credited = {answer.response_id: rewards.get(answer.response_id, 0.0) for answer in answers}
    if gamma <= 0:
        return credited
    turns: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    order: dict[str, dict[int, tuple[float, int]]] = defaultdict(dict)
    for answer in answers:
        if answer.conversation is None:
            continue
        turns[answer.conversation][answer.prompt_id] += rewards.get(answer.response_id, 0.0)
        order[answer.conversation][answer.prompt_id] = (answer.prompt_created_at, answer.prompt_id)
    # Q of each turn, computed backwards: Q_t = sum_{k>t} gamma^(k-t) R_k (later turns only).
    later: dict[int, float] = {}
    for conversation, turn_rewards in turns.items():
        prompts = sorted(turn_rewards, key=lambda prompt_id: order[conversation][prompt_id])
        carry = 0.0
        for prompt_id in reversed(prompts):
            later[prompt_id] = gamma * carry
            carry = turn_rewards[prompt_id] + gamma * carry
    for answer in answers:
        credited[answer.response_id] += later.get(answer.prompt_id, 0.0)
    return credited


def prompt_of(answer: FeedbackAnswer) -> str:
    """The exact text the model continued: the stored dialogue context, or a rebuilt one."""
    return answer.context or render_prompt(answer.prompt_text)


def completion_of(text: str) -> str:
    # The template ends with "Bot:"; the model's answer starts after a space.
    return " " + clean(text)


def group_of(answer: FeedbackAnswer, *, by_prompt: bool = False) -> str:
    """The split key: the conversation, or for a lone prompt (every prompt with ``by_prompt``)
    its question, case and spacing aside."""
    if answer.conversation and not by_prompt:
        return f"c:{answer.conversation}"
    return "q:" + " ".join(answer.prompt_text.casefold().split())


def group_id(key: str) -> str:
    """What an example keeps of its split key: a digest, so neither a question's text (a
    person's words, before any scrubbing) nor a conversation id rides along in a snapshot."""
    return "g:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def is_held_out(group: str, *, fraction: float, salt: str) -> bool:
    """Stable split: the same group lands on the same side on every run."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_dataset(
    *,
    answers: Sequence[FeedbackAnswer],
    votes: Sequence[VoteRow],
    corrections: Sequence[CorrectionRow] = (),
    signals: Sequence[SignalRow] = (),
    options: BuildOptions = BuildOptions(),
) -> FeedbackDataset:
    forgotten = options.forgotten
    usable = [a for a in answers if not a.flagged and a.author not in forgotten]
    usable_ids = {a.response_id for a in usable}
    rewards = net_rewards((v for v in votes if v.response_id in usable_ids), forgotten=forgotten)
    voted = set(rewards)
    # Implicit signals, each kind weighted by its agreement with the votes (usable answers only).
    weights = signal_weights(signals, votes, forgotten=forgotten)
    implicit = implicit_rewards((s for s in signals if s.response_id in usable_ids), weights, forgotten=forgotten)
    implicit_only = {response_id for response_id in implicit if response_id not in voted}
    for response_id, value in implicit.items():
        rewards[response_id] = rewards.get(response_id, 0.0) + value
    rated = {v.response_id for v in votes} | {c.response_id for c in corrections} | {s.response_id for s in signals}
    excluded = sum(1 for a in answers if a.response_id in rated and a.response_id not in usable_ids)
    credited = credited_rewards(usable, rewards, gamma=options.gamma)
    # Few conversations (the shell keeps one until /new): split by prompt, or nothing is held out.
    by_prompt = len({group_of(a) for a in usable}) < options.min_split_groups

    def group(answer: FeedbackAnswer) -> str:
        return group_id(group_of(answer, by_prompt=by_prompt))

    # The split is drawn on the key itself; examples carry only its digest.
    held_groups = {
        group_id(key)
        for key in {group_of(a, by_prompt=by_prompt) for a in usable}
        if is_held_out(key, fraction=options.held_out_fraction, salt=options.split_salt)
    }

    examples: list[Example] = []
    ties = 0
    implicit_examples: set[tuple[str, str]] = set()  # (prompt, completion) labelled by implicit signals alone
    for answer in usable:
        q = credited[answer.response_id]
        if abs(q) <= _TIE:
            ties += answer.response_id in voted
            continue
        if answer.response_id in implicit_only:
            implicit_examples.add((prompt_of(answer), completion_of(answer.text)))
        examples.append(
            Example(
                prompt=prompt_of(answer),
                completion=completion_of(answer.text),
                label=q > 0,
                group=group(answer),
                reward=q,
            )
        )

    rated_usable = [a for a in usable if a.response_id in voted]  # an unshown best-of candidate has no votes
    pairs = _compare_pairs(rated_usable, credited, group) + _correction_pairs(usable, corrections, forgotten, group)
    retries = _retry_pairs(usable, signals, weights, forgotten, group)
    implicit_examples |= {(p.prompt, c) for p in retries for c in (p.chosen, p.rejected)}
    examples = _with_unpaired(examples, pairs + retries)

    def held(group: str) -> bool:
        return group in held_groups

    # What implicit signals alone labelled is never held out (the gate measures votes); in a
    # held-out conversation it is left out, so that conversation stays out of training.
    examples = [e for e in examples if not (held(e.group) and (e.prompt, e.completion) in implicit_examples)]
    train = tuple(e for e in examples if not held(e.group))
    # A held-out answer said word for word to the same prompt in training is no test of
    # generalisation (a small model repeats itself): it is left out of the held-out set.
    trained = {(e.prompt, e.completion) for e in train}
    held_out = [e for e in examples if held(e.group)]
    kept = tuple(e for e in held_out if (e.prompt, e.completion) not in trained)
    return FeedbackDataset(
        train=train,
        held_out=kept,
        held_out_repeats=len(held_out) - len(kept),
        train_pairs=tuple(p for p in pairs + retries if not held(p.group)),
        held_out_pairs=tuple(p for p in pairs if held(p.group)),
        implicit_examples=sum((e.prompt, e.completion) in implicit_examples for e in train),
        skipped_ties=ties,
        excluded=excluded,
        implicit_weights=tuple(weights.values()) if signals else (),
    )


def _compare_pairs(
    answers: Sequence[FeedbackAnswer], credited: dict[int, float], group: Callable[[FeedbackAnswer], str]
) -> list[Pair]:
    """Candidates of one prompt rated differently: the best against the worst (only the
    candidates people voted on: an unshown one's 0 says nothing)."""
    by_prompt: dict[int, list[FeedbackAnswer]] = defaultdict(list)
    for answer in answers:
        by_prompt[answer.prompt_id].append(answer)
    pairs = []
    for candidates in by_prompt.values():
        if len(candidates) < 2:
            continue
        ranked = sorted(candidates, key=lambda a: (credited[a.response_id], -a.candidate))
        worst, best = ranked[0], ranked[-1]
        if credited[best.response_id] - credited[worst.response_id] <= _TIE:
            continue
        if clean(best.text) == clean(worst.text):
            continue
        pairs.append(_pair(best, worse=worst, group=group(best), source="compare"))
    return pairs


def _pair(better: FeedbackAnswer, *, worse: FeedbackAnswer, group: str, source: str) -> Pair:
    """Two answers to one prompt, ``better`` chosen over ``worse`` (the prompt is ``worse``'s)."""
    return Pair(
        prompt=prompt_of(worse),
        chosen=completion_of(better.text),
        rejected=completion_of(worse.text),
        group=group,
        source=source,
    )


def _correction_pairs(
    answers: Sequence[FeedbackAnswer],
    corrections: Sequence[CorrectionRow],
    forgotten: frozenset[str],
    group: Callable[[FeedbackAnswer], str],
) -> list[Pair]:
    by_id = {answer.response_id: answer for answer in answers}
    pairs = []
    for correction in corrections:
        answer = by_id.get(correction.response_id)
        if answer is None or correction.author in forgotten or not clean(correction.text):
            continue
        if clean(correction.text) == clean(answer.text):
            continue
        pairs.append(
            Pair(
                prompt=prompt_of(answer),
                chosen=completion_of(correction.text),
                rejected=completion_of(answer.text),
                group=group(answer),
                source="correction",
            )
        )
    return pairs


def _retry_pairs(
    answers: Sequence[FeedbackAnswer],
    signals: Sequence[SignalRow],
    weights: dict[str, Agreement],
    forgotten: frozenset[str],
    group: Callable[[FeedbackAnswer], str],
) -> list[Pair]:
    """The same question asked again: its new answer preferred to the first (while retries
    earn their weight)."""
    if not weights["retry"].used:
        return []
    by_id = {answer.response_id: answer for answer in answers}
    pairs = []
    for signal in signals:
        if signal.kind != "retry" or signal.better_response_id is None or signal.person in forgotten:
            continue
        first, second = by_id.get(signal.response_id), by_id.get(signal.better_response_id)
        if first is None or second is None or clean(first.text) == clean(second.text):
            continue
        pairs.append(_pair(second, worse=first, group=group(first), source="retry"))
    return pairs


def _with_unpaired(examples: list[Example], pairs: Sequence[Pair]) -> list[Example]:
    """Add each pair as a desirable and an undesirable example, unless the answer is already
    an example: the label its votes gave it wins over the one a pair implies."""
    seen = {(e.prompt, e.completion) for e in examples}
    out = list(examples)
    for pair in pairs:
        for completion, label in ((pair.chosen, True), (pair.rejected, False)):
            key = (pair.prompt, completion)
            if key not in seen:
                seen.add(key)
                out.append(Example(pair.prompt, completion, label, pair.group))
    return out


def scrubbed(dataset: FeedbackDataset, redact: Callable[[str], str]) -> FeedbackDataset:
    """``dataset`` with every text (prompts, answers, corrections) passed through ``redact``
    (storage.redact); labels, rewards and split groups unchanged. Each distinct text is
    redacted once: a dialogue's prompt recurs for every answer to it."""
    done: dict[str, str] = {}

    def text(value: str) -> str:
        if value not in done:
            done[value] = redact(value)
        return done[value]

    def example(e: Example) -> Example:
        return dataclasses.replace(e, prompt=text(e.prompt), completion=text(e.completion))

    def pair(p: Pair) -> Pair:
        return dataclasses.replace(p, prompt=text(p.prompt), chosen=text(p.chosen), rejected=text(p.rejected))

    return dataclasses.replace(
        dataset,
        train=tuple(map(example, dataset.train)),
        held_out=tuple(map(example, dataset.held_out)),
        train_pairs=tuple(map(pair, dataset.train_pairs)),
        held_out_pairs=tuple(map(pair, dataset.held_out_pairs)),
    )


def readiness(dataset: FeedbackDataset, *, min_examples: int) -> str | None:
    """Why this dataset is not enough to train on, or None when it is."""
    if len(dataset.train) < min_examples:
        return f"only {len(dataset.train)} training examples, need at least {min_examples}"
    if dataset.desirable == 0:
        return "no desirable (liked) training examples"
    if dataset.undesirable == 0:
        return "no undesirable (disliked) training examples"
    return None


def balanced_weights(*, desirable: int, undesirable: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) so both labels weigh the same in the KTO loss.

    The KTO paper (eq. 8) wants desirable_weight * n_desirable / (undesirable_weight *
    n_undesirable) in [1, 4/3]; we scale the rarer side up to 1:1.
    """
    if desirable <= 0 or undesirable <= 0:
        return 1.0, 1.0
    if desirable >= undesirable:
        return 1.0, round(desirable / undesirable, 4)
    return round(undesirable / desirable, 4), 1.0


# --- TRL dataset formats ------------------------------------------------------------
def kto_records(examples: Iterable[Example], dialogue: ModelDialogue | None = None) -> list[dict[str, object]]:
    """TRL's unpaired preference format: prompt, completion, label. With the ``dialogue``
    of a model that has a chat template, TRL's conversational form (messages), which TRL
    renders with that template, the end of the turn included."""
    if dialogue is None or not dialogue.chat:
        return [{"prompt": e.prompt, "completion": e.completion, "label": e.label} for e in examples]
    return [
        {
            "prompt": dialogue.messages(e.prompt),
            "completion": [{"role": "assistant", "content": e.completion.strip()}],
            "label": e.label,
        }
        for e in examples
    ]


def dpo_records(pairs: Iterable[Pair]) -> list[dict[str, object]]:
    """TRL's preference format: prompt, chosen, rejected."""
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def sft_records(examples: Iterable[Example], pairs: Iterable[Pair]) -> list[dict[str, object]]:
    """TRL's prompt-completion format: liked answers and people's corrections."""
    records: list[dict[str, object]] = []
    seen: set[tuple[str, str]] = set()
    chosen = [(e.prompt, e.completion) for e in examples if e.label]
    chosen += [(p.prompt, p.chosen) for p in pairs]
    for prompt, completion in chosen:
        if (prompt, completion) not in seen:
            seen.add((prompt, completion))
            records.append({"prompt": prompt, "completion": completion})
    return records
