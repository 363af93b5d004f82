"""The model registry: atomic publish, the current pointer, rollback, pruning, crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.registry import METADATA_FILE, PUBLISHED, REJECTED, ModelRegistry, RegistryError, format_versions


def publish(
    registry: ModelRegistry, *, parent: int, status: str = PUBLISHED, weights: str = "w", metrics: dict | None = None
) -> int:
    with registry.staging() as folder:
        (folder / "model.safetensors").write_text(weights)
        (folder / "tokenizer.json").write_text("{}")
        return registry.publish(
            folder,
            parent=parent,
            status=status,
            metrics={"perplexity": 9.5, **(metrics or {})},
            counts={"train_examples": 12},
            config={"train": {"learning_rate": 1e-4}},
        ).version


def test_empty_registry_serves_the_base_model(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.current() is None
    assert registry.current_version() == 0
    assert registry.versions() == []
    with pytest.raises(RegistryError):
        registry.rollback()


def test_publish_makes_a_complete_current_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert publish(registry, parent=0) == 1
    current = registry.current()
    assert current is not None
    assert (current.version, current.parent, current.status) == (1, 0, PUBLISHED)
    assert current.metrics == {"perplexity": 9.5} and current.counts == {"train_examples": 12}
    assert (current.path / "model.safetensors").read_text() == "w"
    meta = json.loads((current.path / METADATA_FILE).read_text())
    assert set(meta) == {"version", "parent", "status", "created_at", "metrics", "counts", "config", "reasons"}
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == "1"
    assert list((tmp_path / "models" / ".staging").iterdir()) == []


def test_rejected_version_is_kept_but_never_current(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    publish(registry, parent=0)
    with registry.staging() as folder:
        (folder / "model.safetensors").write_text("bad")
        info = registry.publish(folder, parent=1, status=REJECTED, reasons=("perplexity 900 > 1.5 x parent 10",))
    assert info.version == 2 and info.status == REJECTED and info.reasons == ("perplexity 900 > 1.5 x parent 10",)
    assert registry.current_version() == 1
    with pytest.raises(RegistryError, match="rejected"):
        registry.rollback(2)


def test_rollback_to_parent_or_any_earlier_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    for parent in range(3):
        publish(registry, parent=parent)
    assert registry.current_version() == 3
    assert registry.rollback() == 2
    assert registry.rollback(1) == 1
    assert registry.rollback() == 0
    assert registry.current() is None
    assert registry.rollback(3) == 3
    # The next version's number keeps growing; its parent is what was current.
    assert publish(registry, parent=registry.current_version()) == 4


def test_keeps_the_last_k_versions_plus_the_current_one(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models", keep=2)
    publish(registry, parent=0)
    publish(registry, parent=1)
    registry.rollback(1)
    publish(registry, parent=1, status=REJECTED)
    publish(registry, parent=1, status=REJECTED)
    # The two newest (3, 4) and the current one (1) stay; 2 is gone.
    assert [v.version for v in registry.versions()] == [1, 3, 4]
    assert registry.current_version() == 1
    assert publish(registry, parent=1) == 5
    assert [v.version for v in registry.versions()] == [4, 5]


def test_a_crash_while_publishing_leaves_the_registry_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    publish(registry, parent=0)

    def crash(_folder: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("storage.registry._fsync_tree", crash)
    with pytest.raises(OSError, match="disk full"):
        publish(registry, parent=1, weights="half")
    monkeypatch.undo()
    assert [v.version for v in registry.versions()] == [1]
    assert registry.current_version() == 1
    assert (registry.current().path / "model.safetensors").read_text() == "w"
    assert list((tmp_path / "models" / ".staging").iterdir()) == []
    assert publish(registry, parent=1) == 2


def test_staging_left_by_a_dead_process_is_cleaned(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    stale = tmp_path / "models" / ".staging" / "999999999-deadbeef"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_text("half")
    publish(registry, parent=0)
    assert not stale.exists()
    assert [v.version for v in registry.versions()] == [1]


def test_publish_only_takes_staged_folders(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(RegistryError):
        registry.publish(elsewhere, parent=0)


def test_models_lists_each_versions_size_on_disk(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    publish(registry, parent=0, weights="w" * 5000)
    on_disk = sum(path.stat().st_size for path in (tmp_path / "models" / "versions" / "0001").iterdir())
    assert registry.size(1) == on_disk > 5000
    [header, _base, first] = format_versions(registry).splitlines()
    assert "size" in header and "5" in first.split()[9] and first.split()[10] == "KB"
    assert first.split()[8] == "-"  # no reward model


def test_models_shows_the_reward_models_agreement_with_held_out_votes(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    publish(
        registry, parent=0, metrics={"reward_examples": 40, "reward_auc": 0.8125, "reward_auc_interval": [0.7, 0.9]}
    )
    publish(registry, parent=1, metrics={"reward_examples": 6, "reward_auc": None, "reward_auc_interval": None})
    [header, _base, first, second] = format_versions(registry).splitlines()
    assert "reward AUC" in header
    assert "0.81 (0.70-0.90)" in first and "n/a (few votes)" in second


def test_the_training_lock_holds_across_processes_and_frees_when_its_holder_dies(tmp_path: Path) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from storage.registry import ModelRegistry\n"
            f"with ModelRegistry({str(tmp_path / 'models')!r}).training_lock():\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        registry = ModelRegistry(tmp_path / "models")
        with pytest.raises(RegistryError, match="another training run is in progress"), registry.training_lock():
            pass
    finally:
        holder.kill()  # a trainer that dies: the operating system releases its lock
        holder.wait()
    with registry.training_lock():
        assert publish(registry, parent=0) == 1


@pytest.mark.parametrize(
    "damage",
    [
        {"status": "published onmouseover=alert(1)"},
        {"parent": "<b>0</b>"},
        {"counts": {"train_examples": "<script>"}},
        {"created_at": "NaN"},
        {"version": 7},  # another folder's
    ],
)
def test_a_version_json_that_does_not_fit_its_schema_is_never_listed_or_served(tmp_path: Path, damage) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = publish(registry, parent=0)
    path = registry.get(version).path / METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **damage}))
    assert registry.versions() == []
    with pytest.raises(RegistryError, match=f"version {version} is damaged"):
        registry.get(version)


def test_changes_and_results_are_validated_when_read(tmp_path: Path) -> None:
    from storage.records import DamagedRecord
    from trainer import snapshot

    registry = ModelRegistry(tmp_path / "models")
    version = publish(registry, parent=0)
    changes = registry.get(version).path / "changes.json"
    changes.write_text(json.dumps({"answers": [{"question": "q", "before": "a", "after": "b"}], "changed_share": 0.5}))
    record = registry.changes(version)
    assert record is not None and record.answers[0].source == "held_out" and record.gate.passed is False
    for bad in ({"changed_share": "<b>"}, {"answers": "all"}, {"words": {"rose": [{"token": "x", "change": "up"}]}}):
        changes.write_text(json.dumps(bad))
        with pytest.raises(DamagedRecord, match=r"changes\.json"):
            registry.changes(version)

    run = str(tmp_path / "runs" / "000001")
    snapshot.write_result(run, snapshot.RunResult(run=1, status="published", parent=0, version=1))
    assert snapshot.read_result(run) == snapshot.RunResult(run=1, status="published", parent=0, version=1)
    result = Path(run) / snapshot.RESULT
    for bad in ({"status": "<img src=x>"}, {"version": "one"}, {"reason": "x" * 5000}):
        result.write_text(json.dumps({"run": 1, "status": "failed", "parent": 0, **bad}))
        with pytest.raises(snapshot.SnapshotError, match="damaged result"):
            snapshot.read_result(run)
