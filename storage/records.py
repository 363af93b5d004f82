"""The records a version keeps beside its weights, validated when read.

``version.json`` (the registry's metadata) and ``changes.json`` (what the version learned,
trainer.changes) come from a trainer host or a shared bucket: they are input, never
markup and never trusted to have the right shape. Each is read through a schema here; a
file that does not fit is refused as damaged (:class:`DamagedRecord`) instead of
reaching a page or the log half-read. Readers get the validated record: every field
present and of its type, read as an attribute, so a page can show it (escaped) without
checking again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Number = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=20_000)]
# A gate metric: a number, an interval, a count, or the notes of checks that lacked data.
Metric = Number | int | bool | None | list[Number] | list[Text] | Text


class DamagedRecord(ValueError):
    """A record whose shape or values are not what its schema says; the message says where."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False, frozen=True)


# --- version.json --------------------------------------------------------------------------
class VersionRecord(_Record):
    version: int = Field(ge=1)
    parent: int | None = Field(None, ge=0)
    status: Literal["published", "rejected"] = "published"
    created_at: Number = 0.0
    metrics: dict[Text, Metric] = Field(default_factory=dict)
    counts: dict[Text, int] = Field(default_factory=dict)
    config: dict[Text, Any] = Field(default_factory=dict)
    reasons: list[Text] = Field(default_factory=list)


# --- changes.json --------------------------------------------------------------------------
class ChangedAnswer(_Record):
    question: Text
    before: Text
    after: Text
    source: Literal["reference", "held_out"] = "held_out"


class WordShift(_Record):
    token: Text
    change: Number


class Words(_Record):
    rose: list[WordShift] = Field(default_factory=list)
    fell: list[WordShift] = Field(default_factory=list)


class QuotedExample(_Record):
    question: Text
    answer: Text
    reward: Number = 0.0


class ImplicitWeight(_Record):
    """One kind of implicit signal as the run weighed it (trainer.dataset.Agreement)."""

    kind: Text
    answers: int = Field(ge=0)  # answers with this kind of signal and a non-zero net vote
    agreed: int = Field(ge=0)  # of those, where the signal's sign was the votes' sign
    weight: Number = Field(ge=0.0)
    used: bool  # training counted this kind (its weight was not too small)


class ChangesData(_Record):
    counts: dict[Text, int] = Field(default_factory=dict)
    most_liked: list[QuotedExample] = Field(default_factory=list)
    most_disliked: list[QuotedExample] = Field(default_factory=list)
    # None: trained before runs kept them; empty: no implicit signals in its data.
    implicit_weights: list[ImplicitWeight] | None = None


class Gate(_Record):
    passed: bool = False
    reasons: list[Text] = Field(default_factory=list)
    metrics: dict[Text, Metric] = Field(default_factory=dict)


class ChangesRecord(_Record):
    answers: list[ChangedAnswer] = Field(default_factory=list)
    changed_share: Number = Field(0.0, ge=0.0, le=1.0)
    words: Words = Field(default_factory=Words)
    data: ChangesData = Field(default_factory=ChangesData)
    gate: Gate = Field(default_factory=Gate)


R = TypeVar("R", bound=_Record)


def checked(schema: type[R], data: Any, *, what: str) -> R:
    """``data`` validated against ``schema``; :class:`DamagedRecord` if it does not fit."""
    if not isinstance(data, dict):
        raise DamagedRecord(f"{what}: expected a JSON object, found {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise DamagedRecord(f"{what}: {first_error(exc)}") from None


def first_error(exc: ValidationError) -> str:
    """Where a record first fails its schema and why, in a few words: ``answers.0.question: Field required``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "(top)"
    return f"{where}: {first.get('msg', 'invalid')}"
