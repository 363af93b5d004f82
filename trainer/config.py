"""What a training run takes: one dataclass per concern, help text on every field.

This module is the one source of truth for the trainer's options. ``python -m trainer
run`` builds its command-line options from these fields (:func:`add_arguments`, which
works for any dataclass with help on its fields), so a
new field is automatically a new ``--option`` with its help; the bot builds these same
dataclasses from its settings and turns them into that command line with
:func:`to_arguments`, the exact inverse. A renamed field is then a type error in the
bot (and a failing test), never a scheduled run that dies on an unknown option.

Light on purpose (standard library and storage.redact's names only): the bot imports it
without the train extra.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from storage.redact import KINDS as REDACT_KINDS
from storage.registry import KEEP_VERSIONS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True)
class JobConfig:
    """Where a run reads and writes (trainer.job.RunOptions adds the recipe and the gate)."""

    snapshot: str = field(
        metadata={"help": "The run's snapshot in the artifact store (a folder or fsspec URI), written by the bot."}
    )
    registry: str = field(metadata={"help": "The model registry (a folder or fsspec URI)."})
    keep_versions: int = field(default=KEEP_VERSIONS, metadata={"help": "Versions kept besides the current one."})
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field(
        default="INFO", metadata={"help": "The trainer's log level."}
    )


@dataclass(frozen=True)
class DataConfig:
    """How the bot builds a run's dataset from its database (trainer.snapshot); not a trainer option."""

    min_examples: int = field(
        default=8,
        metadata={"help": "Skip the run when fewer training examples exist (both labels are also required)."},
    )
    gamma: float = field(
        default=0.0,
        metadata={
            "help": (
                "Thread credit: a later turn's reward credits earlier answers of the conversation, "
                "times gamma per turn. 0 = off."
            )
        },
    )
    held_out_fraction: float = field(
        default=0.2, metadata={"help": "Share of conversations held out for the eval gate and never trained on."}
    )
    all_history: bool = field(
        default=True,
        metadata={
            "help": (
                "Learn from every vote ever cast (less forgotten people and flagged answers), not only "
                "those cast since the parent version went live. Answers older versions wrote count "
                "the same (bench.learning measures both)."
            )
        },
    )
    implicit: bool = field(
        default=True,
        metadata={
            "help": (
                "Learn from implicit signals too (a thanks or a complaint, a retry, a rephrase: bot.implicit), "
                "each kind weighted by its agreement with people's votes (trainer.dataset.signal_weights)."
            )
        },
    )
    redact: tuple[str, ...] = field(
        default=REDACT_KINDS,
        metadata={
            "help": (
                "What is scrubbed (storage.redact kinds) from the snapshot's texts and from the trainer's "
                "changes.json: secrets and personal data become placeholders such as <EMAIL>. Empty: off."
            )
        },
    )


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = field(
        default=1e-4,
        metadata={
            "help": (
                "AdamW learning rate. TRL's default (1e-6) barely moves GPT-2 on a bot's votes; a much larger "
                "one over-optimises it (python -m bench.training --lr measures a run)."
            )
        },
    )
    beta: float = field(
        default=0.1, metadata={"help": "KTO beta: how strongly the model is held near the reference (parent) model."}
    )
    epochs: float = field(default=2.0, metadata={"help": "Passes over the training examples."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: the epochs decide)."}
    )
    batch_size: int = field(
        default=4,
        metadata={
            "help": ("Examples per step; KTO needs at least 2 (its KL term pairs each prompt with another answer).")
        },
    )
    max_length: int = field(
        default=256, metadata={"help": "Longest prompt + answer in tokens; longer prompts lose their oldest text."}
    )
    lora: bool = field(
        default=False,
        metadata={
            "help": (
                "Train LoRA adapters on the attention projections (found per architecture) and merge "
                "them, instead of all weights. The version also keeps its adapter over version 0 "
                "(adapter/), which a vLLM engine loads without a restart."
            )
        },
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank when --lora is on."})
    balance_weights: bool = field(
        default=True,
        metadata={
            "help": ("Weigh desirable and undesirable examples so both labels count the same, from their counts.")
        },
    )
    checkpoints: int = field(
        default=3,
        metadata={
            "help": (
                "Evenly spaced points of the run (the last is its end) whose weights are kept: the "
                "latest that passes the eval gate is published (early stopping). 1 = only the end."
            )
        },
    )
    reward_model: bool = field(
        default=True,
        metadata={
            "help": (
                "Fit a reward model (a linear head on the new version's features) on the run's examples and "
                "keep it with the version: it ranks best-of-n candidates (THUMBTUNE_BEST_OF)."
            )
        },
    )
    reward_min_auc: float = field(
        default=0.5,
        metadata={
            "help": (
                "The reward model ranks best-of-n candidates only when the lower end of its held-out AUC's "
                "95% interval is above this (0.5: evidence that it beats chance); else the bot shows one "
                "sample, as without a reward model (no AUC at all: too few held-out votes, no ranking)."
            )
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for shuffling, initialisation and sampling."})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto: CUDA with bf16 when present, else CPU in fp32."}
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "trackio"] = field(
        default="none",
        metadata={
            "help": (
                "Where the training curves go (TRL's report_to). tensorboard: event files in the run's "
                "folder of the artifact store; wandb, mlflow, trackio: their own settings (e.g. WANDB_PROJECT)."
            )
        },
    )

    def after_rejections(self, rejections: int) -> TrainConfig:
        """The recipe for a run after ``rejections`` rejected runs in a row on the same parent:
        each halves the learning rate and doubles KTO's beta (up to 3 times), so the loop takes
        a smaller step instead of over-shooting again with the same one."""
        steps = min(max(rejections, 0), MAX_SOFTENING)
        if steps == 0:
            return self
        return dataclasses.replace(self, learning_rate=self.learning_rate / 2**steps, beta=self.beta * 2**steps)


MAX_SOFTENING = 3


@dataclass(frozen=True)
class GateConfig:
    preference_margin: float = field(
        default=0.1,
        metadata={
            "help": (
                "Reject when held-out preference accuracy falls more than this below the parent's "
                "and the 95% interval of the difference lies below 0."
            )
        },
    )
    min_preference_examples: int = field(
        default=5,
        metadata={
            "help": (
                "Fewer held-out liked or disliked answers than this: the preference check reports "
                "'not enough data' instead of deciding on noise."
            )
        },
    )
    perplexity_ratio: float = field(
        default=1.5,
        metadata={
            "help": (
                "Reject when perplexity on the reference text grows by more than this factor over the "
                "parent's, or over version 0's (drift over many versions)."
            )
        },
    )
    distinct_ratio: float = field(
        default=0.7,
        metadata={
            "help": (
                "Reject when the share of distinct sampled answers, or their distinct-2, falls below this "
                "fraction of the parent's or of version 0's (collapse onto a few phrases; against version 0 "
                "so that it cannot compound over versions). Learning a preference lowers them somewhat by design."
            )
        },
    )
    max_top_share: float = field(
        default=0.1,
        metadata={
            "help": (
                "Reject when one answer makes up more than this share of the answers sampled for the probe "
                "questions (or more than top_share_factor x version 0's share, when version 0 repeats itself "
                "more than that)."
            )
        },
    )
    top_share_factor: float = field(
        default=2.0,
        metadata={
            "help": (
                "A model whose version 0 already repeats one answer often may repeat it up to this many "
                "times version 0's share (see max_top_share)."
            )
        },
    )
    relevance_ratio: float = field(
        default=0.5,
        metadata={
            "help": (
                "Reject when relevance (how much likelier version 0 finds each sampled answer after its own "
                "question than after other questions, in nats) falls below this fraction of the parent's or "
                "version 0's: answers must stay on the question asked. 0 = off."
            )
        },
    )
    chrf_margin: float = field(
        default=5.0,
        metadata={
            "help": (
                "Reject when chrF against held-out human corrections drops more than this many points "
                "below the parent's and the 95% interval of the difference lies below 0."
            )
        },
    )
    samples: int = field(
        default=64,
        metadata={
            "help": (
                "Answers sampled per model for the diversity and relevance checks (the reference text's "
                "questions in turn) and at most this many held-out corrections for the chrF check."
            )
        },
    )
    min_corrections: int = field(
        default=5,
        metadata={"help": "Fewer held-out corrections than this: the chrF check reports 'not enough data'."},
    )
    bootstrap_samples: int = field(
        default=1000, metadata={"help": "Resamples behind the gate's 95% intervals (seeded by the run's seed)."}
    )
    max_new_tokens: int = field(default=24, metadata={"help": "Tokens per sampled answer in the gate."})


C = TypeVar("C", bound="DataclassInstance")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def options(config: Any) -> list[dataclasses.Field[Any]]:
    """The fields of a dataclass (or of an instance) that are command-line options: all but
    those whose metadata says ``"option": False`` (set in code only)."""
    return [item for item in dataclasses.fields(config) if item.metadata.get("option", True)]


def add_arguments(parser: argparse.ArgumentParser, config_type: type, *, title: str) -> None:
    """One ``--option`` per option field (:func:`options`), with the field's help and
    default; a field without a default is a required option.

    A ``bool`` is ``--name/--no-name``, a ``Literal`` a choice, ``X | None`` (default None)
    takes an X; the metadata's ``type``, when given, converts the text instead of the
    annotation. Any dataclass of this shape works: ``thumbtune simulate`` builds its
    command line from bot.simulate.SimulationOptions the same way.
    """
    group = parser.add_argument_group(title)
    hints = get_type_hints(config_type)
    for item in options(config_type):
        kind = _without_none(hints[item.name])
        required = item.default is dataclasses.MISSING
        shown = required or item.default is None  # None: the help says what stands in
        help_text = item.metadata["help"] + ("" if shown else f" (default: {item.default})")
        help_text = help_text.replace("%", "%%")  # argparse formats help with %: "95% interval" is text
        common: dict[str, Any] = {"dest": item.name, "help": help_text}
        if required:
            common["required"] = True
        else:
            common["default"] = item.default
        if kind is bool:
            group.add_argument(_flag(item.name), action=argparse.BooleanOptionalAction, **common)
        elif get_origin(kind) is Literal:
            group.add_argument(_flag(item.name), choices=list(get_args(kind)), **common)
        else:
            group.add_argument(_flag(item.name), type=item.metadata.get("type", kind), **common)


def _without_none(kind: Any) -> Any:
    """``X`` for ``X | None``; any other annotation as it is."""
    named = [arg for arg in get_args(kind) if arg is not type(None)]
    return named[0] if len(named) == 1 and type(None) in get_args(kind) else kind


def to_arguments(*configs: Any) -> list[str]:
    """The command-line options that :func:`add_arguments`' parser reads back as ``configs``."""
    arguments: list[str] = []
    for config in configs:
        for item in options(config):
            value = getattr(config, item.name)
            if isinstance(value, bool):
                arguments.append(_flag(item.name) if value else "--no-" + item.name.replace("_", "-"))
            else:
                arguments += [_flag(item.name), str(value)]
    return arguments


def from_arguments(config_type: type[C], args: argparse.Namespace) -> C:
    """``config_type`` from the options :func:`add_arguments` added (other fields keep their defaults)."""
    return config_type(**{item.name: getattr(args, item.name) for item in options(config_type)})


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
