"""The registry and the artifact store on an object store: a local S3-compatible server.

moto's server mode runs on 127.0.0.1 (started here, in its own process group, and ended
with it); s3fs talks to it through fsspec, configured by the ``FSSPEC_S3_*`` variables
the way an operator would point the bot at a MinIO or another S3-compatible store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from bench.ray_head import free_port
from bot.app import open_runtime
from bot.settings import load_settings
from storage.registry import METADATA_FILE, ModelRegistry, RegistryError
from tests.feedback_data import seed_preference
from trainer import snapshot

BUCKET = "thumbtune"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server with one bucket; yields the environment that points fsspec at it."""
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_KEY": "testing",
        "FSSPEC_S3_SECRET": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


@pytest.fixture
def s3(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """fsspec in this process (its config) and in the trainer's (the environment) use the server."""
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(
        fsspec.config.conf,
        "s3",
        {"endpoint_url": s3_server["FSSPEC_S3_ENDPOINT_URL"], "key": "testing", "secret": "testing"},
    )
    fsspec.filesystem("s3").invalidate_cache()
    return s3_server


def _publish(registry: ModelRegistry, *, parent: int, weights: str) -> int:
    with registry.staging() as folder:
        (folder / "model.safetensors").write_text(weights)
        (folder / "config.json").write_text("{}")
        return registry.publish(folder, parent=parent, metrics={"perplexity": 9.5}).version


def test_a_version_on_s3_counts_once_its_version_json_is_there_and_the_pointer_moves_last(s3, tmp_path):
    registry = ModelRegistry(f"s3://{BUCKET}/reg-{time.time_ns()}", keep=2, cache=tmp_path / "cache")
    fs = registry.fs
    assert registry.current_version() == 0 and registry.versions() == []
    assert _publish(registry, parent=0, weights="one") == 1
    assert fs.cat_file(registry._key("CURRENT")) == b"1\n"
    [info] = registry.versions()
    assert (info.version, info.local, info.uri) == (1, False, f"{registry.uri}/versions/0001")
    with pytest.raises(RegistryError, match="local_copy"):
        _ = info.path

    # The bot's cache: downloaded once, complete, then reused.
    copy = registry.local_copy(1)
    assert (copy / "model.safetensors").read_text() == "one" and (copy / METADATA_FILE).is_file()
    assert copy.is_relative_to(tmp_path / "cache")
    fs.pipe_file(registry._key("versions/0001/model.safetensors"), b"changed behind our back")
    assert (registry.local_copy(1) / "model.safetensors").read_text() == "one"  # not fetched again

    # A version cut off mid-upload (no version.json): never listed, never current, its number never reused.
    fs.pipe_file(registry._key("versions/0002/model.safetensors"), b"half")
    assert [v.version for v in registry.versions()] == [1]
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.make_current(2)
    assert registry.current_version() == 1
    assert _publish(registry, parent=1, weights="three") == 3
    assert registry.current_version() == 3

    # Pruning keeps the newest two and the current one; a pruned version is gone as a whole.
    assert _publish(registry, parent=3, weights="four") == 4
    assert [v.version for v in registry.versions()] == [3, 4]
    assert not fs.exists(registry._key("versions/0001"))
    assert registry.rollback() == 3 and registry.current_version() == 3


async def test_a_run_with_the_store_and_the_registry_on_s3_goes_live_from_the_cache(s3, settings_env, monkeypatch):
    prefix = f"s3://{BUCKET}/bot-{time.time_ns()}"
    monkeypatch.setenv("THUMBTUNE_REGISTRY_DIR", f"{prefix}/models")
    monkeypatch.setenv("THUMBTUNE_ARTIFACTS", f"{prefix}/artifacts")
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "0")
    settings = load_settings()
    async with open_runtime(settings) as runtime:
        await seed_preference(runtime.repository, answers=40)
        outcome = await runtime.loop.run_training()
        assert outcome.status in ("published", "rejected") and outcome.version == 1, outcome.reason
        run = snapshot.run_uri(settings.artifacts_uri, outcome.run or 0)
        manifest, _ = snapshot.read(run)  # the snapshot went to the bucket, and the result came back there
        assert manifest.run == outcome.run and snapshot.read_result(run) is not None
        registry = runtime.loop.registry
        assert registry.get(1).uri == f"{prefix}/models/versions/0001"
        if outcome.status == "published":
            assert runtime.generator.version == 1 == registry.current_version()
            cached = settings.data_dir / "cache" / "registry"
            assert list(cached.rglob(METADATA_FILE)), "the served version was loaded from the local cache"
