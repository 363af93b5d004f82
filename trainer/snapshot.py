"""What the bot hands a training run and what the run hands back, through the artifact store.

The bot is the only writer of its database. For each run it writes a **snapshot** to
``<THUMBTUNE_ARTIFACTS>/runs/<run id>/``: ``dataset.json`` (prompts, answers, their
rewards and labels, preference pairs, the held-out split; texts only, never a person
key, with secrets and personal data scrubbed: storage.redact, ``THUMBTUNE_REDACT``)
and ``manifest.json`` (run id, parent version, vote cut-off, the data options, the
counts). The trainer (``python -m trainer run --snapshot URI``) reads only that and the
parent model, and writes ``result.json`` beside them; the bot records the run from it.
So the trainer never opens SQLite, and can run wherever the store can be reached.

The store is any fsspec URI: a local folder (the default), ``file://``, ``s3://``,
``gs://``... The manifest is written last, so a snapshot cut short has none and is
refused; the bot reads ``result.json`` only after the job has ended.

Light on purpose (the standard library, fsspec and the pure dataset types): the bot
writes snapshots without the train extra, e.g. for a trainer on a GPU host.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import fsspec
from pydantic import TypeAdapter, ValidationError

from storage.dialogue import says_any
from storage.records import first_error
from trainer.dataset import FeedbackDataset

log = logging.getLogger(__name__)

FORMAT = 1  # bumped when the files change shape; a trainer refuses a format it does not know
MANIFEST = "manifest.json"
DATASET = "dataset.json"
RESULT = "result.json"
TENSORBOARD = "tensorboard"  # the run's TensorBoard event files (--report-to tensorboard)


class SnapshotError(Exception):
    """A snapshot or a result that cannot be read: missing, damaged, or of an unknown format."""


@dataclass(frozen=True)
class Manifest:
    run: int  # the bot's training_runs id
    parent: int  # the version trained on; the run is skipped if another became current meanwhile
    vote_cutoff: float  # Unix time: the votes cast before it are in the snapshot
    base_model: str  # version 0
    data: dict[str, Any] = field(default_factory=dict)  # the DataConfig the dataset was built with
    counts: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    format: int = FORMAT


@dataclass(frozen=True)
class RunResult:
    """How a run ended: published, rejected, skipped or failed, with the reason."""

    run: int
    status: str
    parent: int
    version: int | None = None
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    tracking: str | None = None  # where the training curves went (a TensorBoard folder, a tracker's link)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RESULT_STATUSES = ("published", "rejected", "skipped", "failed")
_RESULT = TypeAdapter(RunResult)
_MANIFEST = TypeAdapter(Manifest)
_DATASET = TypeAdapter(FeedbackDataset)


def run_uri(store: str, run_id: int) -> str:
    """Where run ``run_id``'s snapshot and result live in the store ``store``."""
    return f"{store.rstrip('/')}/runs/{run_id:06d}"


def write(uri: str, manifest: Manifest, dataset: FeedbackDataset) -> int:
    """Write a run's snapshot to ``uri``; the bytes written. The manifest goes last."""
    fs, root = fsspec.core.url_to_fs(uri)
    fs.makedirs(root, exist_ok=True)
    written = _put(fs, f"{root}/{DATASET}", dataclasses.asdict(dataset))
    return written + _put(fs, f"{root}/{MANIFEST}", dataclasses.asdict(manifest))


def read(uri: str) -> tuple[Manifest, FeedbackDataset]:
    """A run's snapshot, as :func:`write` left it."""
    fs, root = fsspec.core.url_to_fs(uri)
    manifest = _get(fs, f"{root}/{MANIFEST}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise SnapshotError(f"{uri}: snapshot format {found!r}, this trainer reads format {FORMAT}")
    data = _get(fs, f"{root}/{DATASET}")
    # Validated field by field (types included): a snapshot may come from a shared bucket.
    try:
        return _MANIFEST.validate_python(manifest), _DATASET.validate_python(data)
    except ValidationError as exc:
        raise SnapshotError(f"{uri}: damaged snapshot ({first_error(exc)})") from None


def forget_texts(store: str, texts: Collection[str]) -> int:
    """Take every example and pair holding one of ``texts`` (a forgotten person's, as
    storage.dialogue.clean writes them) out of the snapshots in ``store``; how many
    snapshots were rewritten. Counts in the manifests stay as the run saw them."""
    if not texts:
        return 0
    fs, root = fsspec.core.url_to_fs(store)
    rewritten = 0
    for path in sorted(fs.glob(f"{root.rstrip('/')}/runs/*/{DATASET}")):
        try:
            data = _get(fs, path)
            kept = {
                key: [item for item in data[key] if not _holds(item, texts)]
                for key in ("train", "held_out", "train_pairs", "held_out_pairs")
            }
        except (SnapshotError, KeyError, TypeError) as exc:
            log.warning("forget: snapshot %s could not be read (%s); remove it by hand", path, exc)
            continue
        if any(len(kept[key]) != len(data[key]) for key in kept):
            _put(fs, path, {**data, **kept})
            rewritten += 1
    return rewritten


def _holds(item: Any, texts: Collection[str]) -> bool:
    if not isinstance(item, dict):
        return False
    fields = ("prompt", "completion", "chosen", "rejected")
    return any(isinstance(item.get(name), str) and says_any(item[name], texts) for name in fields)


def write_result(uri: str, result: RunResult) -> None:
    fs, root = fsspec.core.url_to_fs(uri)
    fs.makedirs(root, exist_ok=True)
    _put(fs, f"{root}/{RESULT}", result.as_dict())


def read_result(uri: str) -> RunResult | None:
    """The run's result; None when the trainer wrote none (it died, or never started)."""
    fs, root = fsspec.core.url_to_fs(uri)
    path = f"{root}/{RESULT}"
    if not fs.exists(path):
        return None
    data = _get(fs, path)
    # From a trainer host or a shared bucket: input, checked before it reaches the database and the pages.
    try:
        result = _RESULT.validate_python(data)
    except ValidationError as exc:
        raise SnapshotError(f"{uri}: damaged result ({first_error(exc)})") from None
    if result.status not in RESULT_STATUSES or len(result.reason or "") > 2000 or len(result.tracking or "") > 2000:
        raise SnapshotError(f"{uri}: damaged result (status {result.status[:20]!r}, or a reason too long)")
    return result


def _put(fs: Any, path: str, value: Any) -> int:
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    with fs.open(path, "wb") as handle:
        handle.write(data)
    return len(data)


def _get(fs: Any, path: str) -> Any:
    try:
        with fs.open(path, "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        raise SnapshotError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{path}: not JSON ({exc})") from None
