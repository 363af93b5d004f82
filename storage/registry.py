"""The model registry: every trained version in its own folder, one atomic "current" pointer.

Layout under ``root``::

    versions/0001/   model + tokenizer files and version.json (metadata)
    versions/0002/
    CURRENT          the version being served, as text ("0" or absent = the base model)
    .staging/        folders being written; a reader never looks here
    .lock            serialises publishers (flock)

A version is written into ``.staging`` and then renamed into ``versions/`` in one
``rename``, so a reader sees either no version or a complete one. ``CURRENT`` is
replaced with ``os.replace``, so it always names a complete version. Version 0 is
the base model (``THUMBTUNE_MODEL``) and has no folder here.

This module is light (no torch): the bot imports it to poll :meth:`ModelRegistry.current`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_VERSION = 0
METADATA_FILE = "version.json"
POINTER_FILE = "CURRENT"
PUBLISHED = "published"
REJECTED = "rejected"


class RegistryError(Exception):
    """A registry operation was refused; the message says why."""


@dataclass(frozen=True)
class VersionInfo:
    version: int
    path: Path
    parent: int | None
    status: str  # published or rejected
    created_at: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()  # why the gate rejected it


class ModelRegistry:
    def __init__(self, root: Path | str, *, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root = Path(root)
        self.keep = keep

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
            text = (self.root / POINTER_FILE).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return BASE_VERSION
        return int(text) if text else BASE_VERSION

    def current(self) -> VersionInfo | None:
        """The current trained version, or None while the base model is current."""
        version = self.current_version()
        return None if version == BASE_VERSION else self.get(version)

    def get(self, version: int) -> VersionInfo:
        folder = self._folder(version)
        try:
            meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"version {version} is not in the registry {self.root}") from None
        return _info(folder, meta)

    def versions(self) -> list[VersionInfo]:
        """Every complete version, oldest first."""
        found = []
        if self._versions_dir.is_dir():
            for folder in self._versions_dir.iterdir():
                if folder.name.isdigit() and (folder / METADATA_FILE).is_file():
                    found.append(_info(folder, json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))))
        return sorted(found, key=lambda info: info.version)

    # --- writing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder to write a version into; removed afterwards unless published."""
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
        if folder.parent.resolve() != self._staging_dir.resolve():
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
            _write_durably(folder / METADATA_FILE, json.dumps(meta, indent=2, sort_keys=True))
            _fsync_tree(folder)
            self._versions_dir.mkdir(parents=True, exist_ok=True)
            target = self._folder(version)
            os.rename(folder, target)  # the atomic step: the version appears whole
            _fsync_dir(self._versions_dir)
            if status == PUBLISHED and make_current:
                self._point_to(version)
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
        """One training run per registry at a time; RegistryError when another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".training.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RegistryError("another training run is in progress") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- internals -------------------------------------------------------------------
    def _folder(self, version: int) -> Path:
        return self._versions_dir / f"{version:04d}"

    def _next_version(self) -> int:
        # The newest version is never pruned, so the highest folder number only grows.
        numbers = (
            [int(p.name) for p in self._versions_dir.glob("*") if p.name.isdigit()]
            if self._versions_dir.is_dir()
            else []
        )
        return max([*numbers, self.current_version()], default=0) + 1

    def _point_to(self, version: int) -> None:
        _write_durably(self.root / POINTER_FILE, f"{version}\n")

    def _prune(self) -> None:
        """Keep the newest ``keep`` versions and the current one; delete the rest."""
        current = self.current_version()
        numbers = sorted((int(p.name) for p in self._versions_dir.glob("*") if p.name.isdigit()), reverse=True)
        doomed = [n for n in numbers[self.keep :] if n != current]
        for number in doomed:
            # Rename out of versions/ first, so nobody sees a half-deleted version.
            trash = self._staging_dir / f"trash-{number}-{uuid.uuid4().hex[:8]}"
            self._staging_dir.mkdir(parents=True, exist_ok=True)
            os.rename(self._folder(number), trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_staging(self) -> None:
        """Folders left by a crashed writer (its process is gone) are garbage."""
        for folder in self._staging_dir.iterdir():
            pid = folder.name.split("-", 1)[0]
            if folder.name.startswith("trash-") or (pid.isdigit() and not _alive(int(pid))):
                shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _info(folder: Path, meta: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        version=int(meta["version"]),
        path=folder,
        parent=meta.get("parent"),
        status=str(meta.get("status", PUBLISHED)),
        created_at=float(meta.get("created_at", 0.0)),
        metrics=meta.get("metrics", {}),
        counts=meta.get("counts", {}),
        config=meta.get("config", {}),
        reasons=tuple(meta.get("reasons", ())),
    )


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
        "  created / reasons"
    ]
    lines.append(f"{'*' if current == 0 else ' '} {0:>7} {'-':>6} {'base':9}")
    for info in registry.versions():
        m = info.metrics
        lines.append(
            f"{'*' if info.version == current else ' '} {info.version:>7} {info.parent!s:>6} {info.status:9}"
            f" {info.counts.get('train_examples', '-'):>8} {_num(m.get('perplexity')):>8}"
            f" {_num(m.get('preference_accuracy')):>5} {_num(m.get('distinct_2')):>5}"
            f"  {time.strftime('%Y-%m-%d %H:%M', time.localtime(info.created_at))}"
            + (f"  {'; '.join(info.reasons)}" if info.reasons else "")
        )
    return "\n".join(lines)


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"
