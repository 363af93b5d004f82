"""Where the trainer runs: a subprocess here (``local``), or a job on a Ray cluster (``ray``).

Both run the same command (``python -m trainer run --snapshot URI ...``, bot.training)
and say only how it ended: ``None`` when it ended by itself with success, else a few
words ("exited with code 3", "timed out after 3600 s and was stopped"). What the run
did is in the ``result.json`` it wrote, which bot.training reads either way.

The Ray backend submits the command through the Ray Jobs API to
``THUMBTUNE_RAY_ADDRESS`` (the head's dashboard, e.g. ``http://gpu-host:8265``) as job
``thumbtune-<store>-run-<id>``, asking for ``THUMBTUNE_RAY_CPUS`` and
``THUMBTUNE_RAY_GPUS`` (one GPU by default when training is meant for cuda), relays
its log lines into ``thumbtune.trainer``, polls its status, and stops the job at the
timeout or when the bot stops. The job id is derived from the run, so a bot that
restarts finds a job still running and waits for it again (it is never submitted twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from bot.settings import Settings

log = logging.getLogger(__name__)
trainer_log = logging.getLogger("thumbtune.trainer")

RAY_INSTALL_HINT = "pip install 'thumbtune[ray]'"
GONE = "gone"  # reattach(): the platform knows no such job


class BackendUnavailable(Exception):
    """The backend cannot take a job now (e.g. the Ray head does not answer); the run fails with this."""


class Backend(Protocol):
    name: str

    async def run(self, command: list[str], *, run_id: int, relay: bool, timeout_s: float) -> str | None:
        """Run ``command`` to its end (stopped after ``timeout_s``); None on success, else how it ended."""

    async def reattach(self, run_id: int, *, timeout_s: float) -> str | None:
        """Wait for a job a previous bot started for ``run_id``: how it ended, or :data:`GONE`."""


# What the trainer never needs: chat credentials, the dashboard token, the person secret.
# Its options travel on its command line, so no THUMBTUNE_ variable either.
CHAT_SECRETS = ("DISCORD_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL")


def trainer_environment(environ: Mapping[str, str], secret_values: Iterable[str]) -> dict[str, str]:
    """The environment a local trainer starts with: the bot's, without the chat credentials,
    the ``THUMBTUNE_`` settings and any variable holding a secret setting's value (under
    whatever name). What training needs stays: PATH, HF_*, CUDA_*, AWS_* for an S3 store..."""
    secrets = {value for value in secret_values if value}
    return {
        name: value
        for name, value in environ.items()
        if name not in CHAT_SECRETS and not name.startswith("THUMBTUNE_") and value not in secrets
    }


class LocalBackend:
    """The trainer as a subprocess of the bot (or of ``THUMBTUNE_TRAIN_LAUNCHER``), started
    with :func:`trainer_environment`."""

    name = "local"

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        self.environment = dict(environment) if environment is not None else None

    async def run(self, command: list[str], *, run_id: int, relay: bool, timeout_s: float) -> str | None:
        if relay:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.environment
            )
        else:  # its stdout too goes to stderr: this process's stdout is for the run's result
            process = await asyncio.create_subprocess_exec(*command, stdout=sys.stderr.fileno(), env=self.environment)
        relays = [
            asyncio.create_task(_relay_stream(stream, level))
            for stream, level in ((process.stderr, logging.INFO), (process.stdout, logging.DEBUG))
            if stream is not None
        ]
        try:
            await asyncio.wait_for(process.wait(), timeout=timeout_s)
        except asyncio.TimeoutError:
            await _kill(process)
            return f"timed out after {timeout_s:g} s and was killed"
        except asyncio.CancelledError:
            await asyncio.shield(_kill(process))
            raise
        finally:
            await asyncio.gather(*relays, return_exceptions=True)
        return None if process.returncode == 0 else f"exited with code {process.returncode}"

    async def reattach(self, run_id: int, *, timeout_s: float) -> str | None:
        return GONE  # a subprocess does not outlive the bot's interest in it


class RayBackend:
    """The trainer as a Ray job, through the Jobs API of the head at ``THUMBTUNE_RAY_ADDRESS``."""

    name = "ray"
    poll_s = 1.0
    submit_patience_s = 60.0

    def __init__(self, settings: Settings) -> None:
        assert settings.ray_address is not None  # the settings check it
        self.settings = settings
        self.address = settings.ray_address
        # Job ids are unique per artifact store, so two bots on one cluster never collide.
        self.prefix = "thumbtune-" + hashlib.sha256(settings.artifacts_uri.encode()).hexdigest()[:8]
        self._client: Any = None

    def job_id(self, run_id: int) -> str:
        return f"{self.prefix}-run-{run_id:06d}"

    @property
    def gpus(self) -> float:
        if self.settings.ray_gpus is not None:
            return self.settings.ray_gpus
        return 1.0 if self.settings.device == "cuda" else 0.0

    async def run(self, command: list[str], *, run_id: int, relay: bool, timeout_s: float) -> str | None:
        client = await self.client()
        job = self.job_id(run_id)
        options: dict[str, Any] = {
            "entrypoint": shlex.join(command),
            "submission_id": job,
            "entrypoint_num_cpus": self.settings.ray_cpus,
            "entrypoint_num_gpus": self.gpus,
            "metadata": {"thumbtune_run": str(run_id)},
        }
        if self.settings.ray_runtime_env:
            options["runtime_env"] = self.settings.ray_runtime_env
        await self._submit(client, options)
        log.info("training run %d submitted to Ray at %s as job %s", run_id, self.address, job)
        return await self._follow(client, job, relay=relay, timeout_s=timeout_s)

    async def _submit(self, client: Any, options: dict[str, Any]) -> None:
        """Submit the job; a head that says "try again later" (its job agent is still starting,
        e.g. just after the cluster came up) is asked again for up to ``submit_patience_s``."""
        deadline = time.monotonic() + self.submit_patience_s
        while True:
            try:
                await asyncio.to_thread(client.submit_job, **options)
                return
            except Exception as exc:  # the Jobs API raises RuntimeError for an HTTP error
                if "try again" not in str(exc).lower() or time.monotonic() > deadline:
                    raise BackendUnavailable(f"Ray at {self.address} refused the job: {_short(exc)}") from None
                log.info("Ray at %s is not ready for jobs yet (%s); trying again", self.address, _short(exc))
                await asyncio.sleep(1.0)

    async def reattach(self, run_id: int, *, timeout_s: float) -> str | None:
        client = await self.client()
        job = self.job_id(run_id)
        try:
            await asyncio.to_thread(client.get_job_status, job)
        except RuntimeError:  # the Jobs API answers 404 as a RuntimeError
            return GONE
        log.info("training run %d: following Ray job %s again after the restart", run_id, job)
        return await self._follow(client, job, relay=True, timeout_s=timeout_s)

    async def client(self) -> Any:
        """The Jobs API client; :class:`BackendUnavailable` when the head does not answer."""
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise BackendUnavailable(
                    f"THUMBTUNE_TRAIN_BACKEND=ray needs the ray extra: {RAY_INSTALL_HINT}"
                ) from None
            try:
                self._client = await asyncio.to_thread(JobSubmissionClient, self.address)
            except Exception as exc:  # ConnectionError, or a RuntimeError from the version check
                raise BackendUnavailable(f"Ray at {self.address} is unreachable: {_short(exc)}") from None
        return self._client

    async def _follow(self, client: Any, job: str, *, relay: bool, timeout_s: float) -> str | None:
        """Wait for ``job`` to end (relaying its log); stop it at the timeout or when cancelled."""
        from ray.job_submission import JobStatus

        relaying = asyncio.create_task(_relay_ray(client, job, to_log=relay))
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                status = await asyncio.to_thread(client.get_job_status, job)
                if status.is_terminal():
                    break
                if time.monotonic() > deadline:
                    await self._stop(client, job)
                    return f"timed out after {timeout_s:g} s and was stopped (Ray job {job})"
                await asyncio.sleep(self.poll_s)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(client, job))
            raise
        finally:
            # The log stream ends with the job; give it a moment to deliver the last lines.
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(relaying, timeout=5)
            relaying.cancel()
        if status == JobStatus.SUCCEEDED:
            return None
        info = await asyncio.to_thread(client.get_job_info, job)
        return f"ended as {status.value} on Ray (job {job}): {info.message or 'no message'}"

    async def _stop(self, client: Any, job: str) -> None:
        """Stop the job and wait (a little) until Ray says it has ended."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.stop_job, job)
            for _ in range(30):
                if (await asyncio.to_thread(client.get_job_status, job)).is_terminal():
                    return
                await asyncio.sleep(0.5)
        log.warning("Ray job %s did not confirm it stopped", job)


def backend_for(settings: Settings) -> Backend:
    if settings.train_backend == "ray":
        # A Ray job gets none of the bot's environment: the Jobs API sends the entrypoint and
        # THUMBTUNE_RAY_RUNTIME_ENV only; the job runs in the environment of the cluster.
        return RayBackend(settings)
    return LocalBackend(trainer_environment(os.environ, settings.secret_values()))


async def _relay_stream(stream: asyncio.StreamReader, level: int) -> None:
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            trainer_log.log(level, "%s", line)


async def _relay_ray(client: Any, job: str, *, to_log: bool) -> None:
    """The job's output: into ``thumbtune.trainer`` (the bot's log), or as it is to stderr
    (``thumbtune train --now``: a person at a terminal)."""
    async for chunk in client.tail_job_logs(job):
        if not to_log:
            sys.stderr.write(chunk)
            sys.stderr.flush()
            continue
        for line in chunk.splitlines():
            if line.strip():
                trainer_log.info("%s", line.rstrip())


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"
