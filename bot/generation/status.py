"""What an engine reports about itself for ``/healthz``: reachable or not, which version, per replica."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaState:
    """One server of a remote engine, as ``/healthz`` shows it."""

    url: str
    up: bool  # answers its health probe
    ready: bool  # up and holding the current version: it gets traffic
    version: int | None  # the version it serves now (None: not known, e.g. down)
    error: str | None = None  # why it is down or behind, in a few words


@dataclass(frozen=True)
class EngineState:
    """Where answers are generated and whether that place can answer now."""

    kind: str  # local or vllm
    reachable: bool  # at least one place can answer now
    version: int  # the version new answers come from
    replicas: tuple[ReplicaState, ...] = field(default_factory=tuple)
