"""A local Ray head for the Ray backend's tests and benchmark: started on free ports in a
temp folder, in its own process group, and stopped by ending that group (nothing else)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_ray_head(*, cpus: int = 2, start_timeout_s: float = 90.0) -> Iterator[str]:
    """``ray start --head --block`` on this machine; yields the dashboard (Jobs API) address."""
    from ray.job_submission import JobSubmissionClient

    ray = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="ttray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    dashboard = free_port()
    log_path = Path(temp) / "head.log"
    with log_path.open("wb") as log:
        head = subprocess.Popen(
            [
                str(ray),
                "start",
                "--head",
                "--block",
                "--num-cpus",
                str(cpus),
                "--disable-usage-stats",
                "--include-dashboard",
                "true",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(dashboard),
                "--port",
                str(free_port()),
                "--temp-dir",
                temp,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the end stops exactly what it started
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:  # ready when a job can run: the dashboard answers and its job agent takes jobs
            try:
                client = JobSubmissionClient(address)
                job = client.submit_job(entrypoint="true")
                while not client.get_job_status(job).is_terminal():
                    time.sleep(0.2)
                break
            except Exception:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not start: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        # Ray's own processes (raylet, GCS, dashboard) end with the group; make sure of it.
        leftover = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
