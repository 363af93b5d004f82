"""The model registry: every trained version in its own folder, one atomic "current" pointer.

The root is a local folder or any fsspec URI (``s3://bucket/thumbtune/models``, ...).
Layout under ``root``::

    versions/0001/   model + tokenizer files and version.json (metadata)
    versions/0002/
    CURRENT          the version being served, as text ("0" or absent = the base model)
    .staging/        folders being written; a reader never looks here
    .lock            serialises publishers (a file lock: flock on POSIX, msvcrt on Windows)

In a local folder a version is written into ``.staging`` and then renamed into
``versions/`` in one ``rename``, so a reader sees either no version or a complete one;
``CURRENT`` is replaced with ``os.replace``. On an object store (no rename) a version is
staged in a local temporary folder, uploaded file by file with ``version.json`` last,
and a reader counts a version only once its ``version.json`` exists; ``CURRENT`` is one
object, replaced in one PUT, after everything else. Either way ``CURRENT`` always names
a complete version. Loading needs local files: :meth:`ModelRegistry.local_copy` gives
the folder, downloaded once into a cache for a remote registry. On an object store there
is no lock between publishers: one bot starts one run at a time. Version 0 is the base
model (``THUMBTUNE_MODEL``) and has no folder here.

This module is light (no torch): the bot imports it to poll :meth:`ModelRegistry.current`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from filelock import FileLock, Timeout
from fsspec.implementations.local import LocalFileSystem

from storage.dialogue import says_any
from storage.records import ChangesRecord, DamagedRecord, QuotedExample, VersionRecord, checked

log = logging.getLogger(__name__)

BASE_VERSION = 0
KEEP_VERSIONS = 5  # versions kept besides the current one (THUMBTUNE_KEEP_VERSIONS); the one default
METADATA_FILE = "version.json"
CHANGES_FILE = "changes.json"  # what the version learned (trainer.changes)
ADAPTER_DIR = "adapter"  # a LoRA version's PEFT adapter over version 0, beside its merged weights
POINTER_FILE = "CURRENT"
PUBLISHED = "published"
REJECTED = "rejected"


def adapter_of(folder: Path | str) -> Path | None:
    """The PEFT adapter (over version 0) a version's folder keeps, if it has one: an engine
    that loads adapters (vLLM) serves the version from it instead of the full weights."""
    adapter = Path(folder) / ADAPTER_DIR
    return adapter if (adapter / "adapter_config.json").is_file() else None


class RegistryError(Exception):
    """A registry operation was refused; the message says why."""


@dataclass(frozen=True)
class VersionInfo:
    version: int
    uri: str  # where the version's files are: a local folder or a URI in the registry's store
    parent: int | None
    status: str  # published or rejected
    created_at: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()  # why the gate rejected it
    local: bool = True  # in a local folder (else fetch it with ModelRegistry.local_copy)

    @property
    def path(self) -> Path:
        """The version's folder, for a local registry."""
        if not self.local:
            raise RegistryError(f"version {self.version} is in {self.uri}; use ModelRegistry.local_copy()")
        return Path(self.uri)


class ModelRegistry:
    def __init__(self, root: Path | str, *, keep: int = KEEP_VERSIONS, cache: Path | None = None) -> None:
        """``root``: a folder or an fsspec URI. ``cache``: where versions of a remote registry
        are downloaded to be loaded (default: a folder under the system's temp folder)."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.uri = str(root)
        self.fs, self._root_path = fsspec.core.url_to_fs(self.uri)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = Path(self._root_path)  # the folder, for a local registry
        self.keep = keep
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        self.cache = cache if cache is not None else Path(tempfile.gettempdir()) / "thumbtune-registry-cache"
        self._cache_dir = self.cache / digest

    @property
    def _versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def _staging_dir(self) -> Path:
        return self.root / ".staging"

    # --- reading (cheap: the bot polls these) ----------------------------------------
    def current_version(self) -> int:
        """The version being served; 0 (the base model) when nothing was published."""
        try:
            text = self.fs.cat_file(self._key(POINTER_FILE)).decode("ascii").strip()
        except FileNotFoundError:
            return BASE_VERSION
        return int(text) if text else BASE_VERSION

    def current(self) -> VersionInfo | None:
        """The current trained version, or None while the base model is current."""
        version = self.current_version()
        return None if version == BASE_VERSION else self.get(version)

    def get(self, version: int) -> VersionInfo:
        """The version's metadata; :class:`RegistryError` when it is missing or damaged
        (version.json is input: validated, storage.records)."""
        try:
            raw = json.loads(self.fs.cat_file(self._key(f"versions/{version:04d}/{METADATA_FILE}")))
            meta = checked(VersionRecord, raw, what=f"version {version}: {METADATA_FILE}")
        except FileNotFoundError:
            raise RegistryError(f"version {version} is not in the registry {self.uri}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, DamagedRecord) as exc:
            raise RegistryError(f"version {version} is damaged ({exc})") from None
        if meta.version != version:
            raise RegistryError(f"version {version} is damaged ({METADATA_FILE} says version {meta.version})")
        return self._info(meta)

    def versions(self) -> list[VersionInfo]:
        """Every complete version (its version.json written), oldest first."""
        found = []
        for number in self._numbers():
            with contextlib.suppress(RegistryError):  # a version being uploaded, or being pruned
                found.append(self.get(number))
        return found

    def changes(self, version: int) -> ChangesRecord | None:
        """What the version learned (``changes.json``, written by the trainer), validated
        (storage.records.ChangesRecord); None for a version without one. A file that does not
        fit its schema raises :class:`~storage.records.DamagedRecord`."""
        what = f"version {version}: {CHANGES_FILE}"
        try:
            raw = json.loads(self.fs.cat_file(self._key(f"versions/{version:04d}/{CHANGES_FILE}")))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DamagedRecord(f"{what}: not JSON ({exc})") from None
        return checked(ChangesRecord, raw, what=what)

    def forget_texts(self, texts: Collection[str]) -> int:
        """Take a forgotten person's ``texts`` (as storage.dialogue.clean writes them) out of
        every version's ``changes.json``: quoted training examples holding them are dropped,
        held-out prompts of theirs are blanked with the answers to them. How many files changed."""
        if not texts:
            return 0
        changed = 0
        for version in self._numbers():
            try:
                record = self.changes(version)
            except DamagedRecord as exc:
                log.warning("forget: %s; remove it by hand", exc)
                continue
            if record is None:
                continue
            scrubbed = _without_texts(record, texts)
            if scrubbed != record:
                text = json.dumps(scrubbed.model_dump(), ensure_ascii=False)
                key = self._key(f"versions/{version:04d}/{CHANGES_FILE}")
                if self.local:
                    _write_durably(Path(key), text)
                else:
                    self.fs.pipe_file(key, text.encode())
                changed += 1
        return changed

    def size(self, version: int) -> int:
        """Bytes the version takes in the registry (weights, tokenizer, metadata)."""
        return int(self.fs.du(self._key(f"versions/{version:04d}"), total=True))

    def local_copy(self, version: int) -> Path:
        """A local folder with the version's files, to load it: the version's own folder in a
        local registry; for a remote one, a copy downloaded once into the cache."""
        info = self.get(version)
        if self.local:
            return info.path
        folder = self._cache_dir / f"{version:04d}-{int(info.created_at * 1000)}"
        if (folder / METADATA_FILE).is_file():
            return folder
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        partial = self._cache_dir / f".{folder.name}.{uuid.uuid4().hex[:8]}"
        try:
            self.fs.invalidate_cache(self._key(f"versions/{version:04d}"))
            self.fs.get(self._key(f"versions/{version:04d}") + "/", str(partial) + "/", recursive=True)
            os.replace(partial, folder)  # a complete copy appears at once
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return folder

    # --- writing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh local folder to write a version into; removed afterwards unless published."""
        if not self.local:
            with tempfile.TemporaryDirectory(prefix="thumbtune-staging-") as temporary:
                yield Path(temporary)
            return
        self._staging_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()
        folder = self._staging_dir / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(
        self,
        folder: Path,
        *,
        parent: int,
        status: str = PUBLISHED,
        make_current: bool = True,
        metrics: Mapping[str, Any] | None = None,
        counts: Mapping[str, int] | None = None,
        config: Mapping[str, Any] | None = None,
        reasons: tuple[str, ...] = (),
    ) -> VersionInfo:
        """Move a complete staged folder into the registry as the next version.

        ``status`` is ``published`` or ``rejected``; a rejected version is kept for
        inspection but never becomes current.
        """
        if status not in (PUBLISHED, REJECTED):
            raise ValueError(f"unknown status {status!r}")
        folder = Path(folder)
        if self.local and folder.parent.resolve() != self._staging_dir.resolve():
            raise RegistryError("publish() takes a folder made by staging(), so the move is one rename")
        with self._locked():
            version = self._next_version()
            meta = {
                "version": version,
                "parent": parent,
                "status": status,
                "created_at": time.time(),
                "metrics": dict(metrics or {}),
                "counts": dict(counts or {}),
                "config": dict(config or {}),
                "reasons": list(reasons),
            }
            text = json.dumps(meta, indent=2, sort_keys=True)
            if self.local:
                _write_durably(folder / METADATA_FILE, text)
                _fsync_tree(folder)
                self._versions_dir.mkdir(parents=True, exist_ok=True)
                target = self._folder(version)
                os.rename(folder, target)  # the atomic step: the version appears whole
                _fsync_dir(self._versions_dir)
            else:
                # No rename on an object store: every file first, version.json (what makes it count) last.
                prefix = self._key(f"versions/{version:04d}")
                for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != METADATA_FILE):
                    self.fs.put_file(str(path), f"{prefix}/{path.relative_to(folder).as_posix()}")
                self.fs.pipe_file(f"{prefix}/{METADATA_FILE}", text.encode())
            if status == PUBLISHED and make_current:
                self._make_current(version)
            self._prune()
        return self.get(version)

    def rollback(self, version: int | None = None) -> int:
        """Make an earlier version current (default: the current one's parent); returns it."""
        with self._locked():
            current = self.current_version()
            if version is None:
                if current == BASE_VERSION:
                    raise RegistryError("the base model (version 0) is current; there is nothing to roll back")
                parent = self.get(current).parent
                version = BASE_VERSION if parent is None else parent
            self._make_current(version)
            return version

    def make_current(self, version: int) -> None:
        """Serve ``version`` (one that passed the gate, or 0); the pointer moves last, in one step."""
        with self._locked():
            self._make_current(version)

    def _make_current(self, version: int) -> None:
        if version != BASE_VERSION:
            info = self.get(version)
            if info.status != PUBLISHED:
                raise RegistryError(f"version {version} was {info.status} by the eval gate; not serving it")
        self._point_to(version)

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """One training run per registry at a time; RegistryError when another holds it.

        A lock file in a local registry; none on an object store (the bot starts one run at a time)."""
        if not self.local:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".training.lock", timeout=0)  # flock on POSIX, msvcrt on Windows
        try:
            lock.acquire()
        except Timeout:
            raise RegistryError("another training run is in progress") from None
        try:
            yield
        finally:
            lock.release()

    # --- internals -------------------------------------------------------------------
    def _key(self, relative: str) -> str:
        return f"{self._root_path.rstrip('/')}/{relative}"

    def _folder(self, version: int) -> Path:
        return self._versions_dir / f"{version:04d}"

    def _info(self, meta: VersionRecord) -> VersionInfo:
        version = meta.version
        where = str(self._folder(version)) if self.local else f"{self.uri.rstrip('/')}/versions/{version:04d}"
        return VersionInfo(
            version=version,
            uri=where,
            parent=meta.parent,
            status=meta.status,
            created_at=meta.created_at,
            metrics=meta.metrics,
            counts=meta.counts,
            config=meta.config,
            reasons=tuple(meta.reasons),
            local=self.local,
        )

    def _numbers(self) -> list[int]:
        """The version numbers with a folder (complete or not), ascending."""
        self.fs.invalidate_cache(self._key("versions"))  # another process may have published meanwhile
        try:
            entries = self.fs.ls(self._key("versions"), detail=False)
        except FileNotFoundError:
            return []
        names = (str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return sorted(int(name) for name in names if name.isdigit())

    def _next_version(self) -> int:
        # The newest version is never pruned, so the highest folder number only grows.
        return max([*self._numbers(), self.current_version()], default=0) + 1

    def _point_to(self, version: int) -> None:
        if self.local:
            _write_durably(self.root / POINTER_FILE, f"{version}\n")
        else:
            self.fs.pipe_file(self._key(POINTER_FILE), f"{version}\n".encode())  # one PUT: old or new

    def _prune(self) -> None:
        """Keep the newest ``keep`` versions and the current one; delete the rest."""
        current = self.current_version()
        numbers = sorted(self._numbers(), reverse=True)
        doomed = [n for n in numbers[self.keep :] if n != current]
        for number in doomed:
            if self.local:
                # Rename out of versions/ first, so nobody sees a half-deleted version.
                trash = self._staging_dir / f"trash-{number}-{uuid.uuid4().hex[:8]}"
                self._staging_dir.mkdir(parents=True, exist_ok=True)
                os.rename(self._folder(number), trash)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                prefix = self._key(f"versions/{number:04d}")
                self.fs.rm_file(f"{prefix}/{METADATA_FILE}")  # it stops counting first
                self.fs.rm(prefix, recursive=True)

    def _remove_stale_staging(self) -> None:
        """Folders left by a crashed writer (its process is gone) are garbage."""
        for folder in self._staging_dir.iterdir():
            pid = folder.name.split("-", 1)[0]
            if folder.name.startswith("trash-") or (pid.isdigit() and not _alive(int(pid))):
                shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.local:  # no lock on an object store: one bot, one run at a time
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / ".lock"):
            yield


def _without_texts(record: ChangesRecord, texts: Collection[str]) -> ChangesRecord:
    def quotes(example: QuotedExample) -> bool:
        return says_any(example.question, texts) or says_any(example.answer, texts)

    data = record.data.model_copy(
        update={
            "most_liked": [item for item in record.data.most_liked if not quotes(item)],
            "most_disliked": [item for item in record.data.most_disliked if not quotes(item)],
        }
    )
    answers = [
        answer.model_copy(update={"question": "", "before": "", "after": ""})
        if answer.source == "held_out" and says_any(answer.question, texts)
        else answer
        for answer in record.answers
    ]
    return record.model_copy(update={"data": data, "answers": answers})


def _write_durably(path: Path, text: str) -> None:
    """Write a small file so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def format_versions(registry: ModelRegistry) -> str:
    """The table `models` prints: one line per version, the current one marked."""
    current = registry.current_version()
    lines = [
        f"{'':1} {'version':>7} {'parent':>6} {'status':9} {'examples':>8} {'ppl':>8} {'pref':>5} {'dist2':>5}"
        f" {'reward AUC':>16} {'size':>8}  created / reasons"
    ]
    lines.append(f"{'*' if current == 0 else ' '} {0:>7} {'-':>6} {'base':9}")
    for info in registry.versions():
        m = info.metrics
        lines.append(
            f"{'*' if info.version == current else ' '} {info.version:>7} {info.parent!s:>6} {info.status:9}"
            f" {info.counts.get('train_examples', '-'):>8} {_num(m.get('perplexity')):>8}"
            f" {_num(m.get('preference_accuracy')):>5} {_num(m.get('distinct_2')):>5}"
            f" {_reward(m):>16} {_size(registry.size(info.version)):>8}"
            f"  {time.strftime('%Y-%m-%d %H:%M', time.localtime(info.created_at))}"
            + (f"  {'; '.join(info.reasons)}" if info.reasons else "")
        )
    return "\n".join(lines)


def _reward(metrics: Mapping[str, Any]) -> str:
    """The reward model's held-out AUC with its 95 % interval: 0.81 (0.70-0.90); n/a without
    enough held-out votes; - without a reward model; ", not ranking" when it has no evidence
    of beating chance, so the bot shows one sample."""
    if "reward_examples" not in metrics:
        return "-"
    auc, interval = metrics.get("reward_auc"), metrics.get("reward_auc_interval")
    unused = ", not ranking" if metrics.get("reward_ranks") is False else ""
    if auc is None:
        return "n/a (few votes)" + unused
    return (f"{auc:.2f} ({interval[0]:.2f}-{interval[1]:.2f})" if interval else f"{auc:.2f}") + unused


def _size(size: int) -> str:
    """Bytes as people read them: 719 KB, 498 MB."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} GB"


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"
