"""A real vLLM server for the tests (bench.vllm_server), and the rule for when there is none.

Without `.venv-vllm` (`make vllm`) the tests that need a server are skipped, saying how to
get it, except under CI (``CI=true``), where a missing virtualenv is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.vllm_server import VllmMissing, VllmServer, free_port, vllm_python

__all__ = ["VllmServer", "free_port", "require_vllm"]


def require_vllm() -> Path:
    """The vLLM virtualenv's python; skips the test without it (fails under CI)."""
    try:
        return vllm_python()
    except VllmMissing as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{exc}; CI must build it (.ci/run)")
        pytest.skip(str(exc))
