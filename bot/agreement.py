"""Each kind of implicit signal beside people's own votes, as people read it: how often it
agreed with the votes on the answers that have both, on how many answers, and the weight
training gives it (trainer.dataset.signal_weights).

Two sources, one view: :func:`current` computes the figures over the whole database now
(what the next run would use: `thumbtune models`, the `models` chat command, the
dashboard's index); a version's record keeps the figures its own run used
(storage.records.ImplicitWeight in ``changes.json``: `thumbtune diff`, the version page).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from storage.repository import Repository
from trainer.dataset import MIN_SIGNAL_WEIGHT, Agreement, signal_weights

NOT_USED = f"not used: under {MIN_SIGNAL_WEIGHT:.1f}"
DEFAULT = "default: nothing to calibrate on"


class Calibration(Protocol):
    """One kind's figures: trainer.dataset.Agreement, or a run's storage.records.ImplicitWeight."""

    @property
    def kind(self) -> str: ...
    @property
    def answers(self) -> int: ...
    @property
    def agreed(self) -> int: ...
    @property
    def weight(self) -> float: ...
    @property
    def used(self) -> bool: ...


@dataclass(frozen=True)
class AgreementRow:
    """One kind's figures as shown: the agreement as a percentage ("-" without answers to
    calibrate on), the weight, and a note when the kind was left out or kept its default."""

    kind: str
    answers: int
    agreed: str
    weight: str
    note: str


def rows(items: Iterable[Calibration]) -> list[AgreementRow]:
    shown = []
    for item in items:
        rate = f"{item.agreed / item.answers:.0%}" if item.answers else "-"
        note = NOT_USED if not item.used else DEFAULT if item.answers == 0 else ""
        shown.append(AgreementRow(item.kind, item.answers, rate, f"{item.weight:.2f}", note))
    return shown


def table(items: Iterable[Calibration]) -> str:
    """The figures as a plain-text table, one kind a line."""
    lines = [f"{'implicit signal':16} {'answers with votes':>18} {'agreed':>7} {'weight':>7}"]
    for row in rows(items):
        note = f"  ({row.note})" if row.note else ""
        lines.append(f"{row.kind:16} {row.answers:>18} {row.agreed:>7} {row.weight:>7}{note}")
    return "\n".join(lines)


def missing(recorded: Sequence[Calibration] | None) -> str:
    """Why a run's record shows no figures ("" when it has them)."""
    if recorded is None:
        return "not recorded (trained before runs kept them)"
    return "" if recorded else "none in its training data"


async def current(repository: Repository) -> list[Agreement]:
    """Each kind's figures over the whole database now: every signal, and the votes on the
    answers that have one (all the votes the agreement reads)."""
    weights = signal_weights(await repository.all_signals(), await repository.votes_on_signalled_answers())
    return list(weights.values())


async def agreement_table(repository: Repository) -> str:
    """What `thumbtune models` and the `models` chat command show."""
    return table(await current(repository))
