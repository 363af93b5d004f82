"""Training runs on the tiny model: publish, reject, crash, skip, export (real SQLite, real TRL).

The trainer reads a snapshot written the way the bot writes it (trainer.snapshot), and
never the database: one test runs it as a process in which SQLite cannot be opened.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from bot.snapshots import prepare
from storage.database import Database
from storage.registry import ModelRegistry, adapter_of
from storage.repository import Repository
from storage.reward import RewardHead
from tests.feedback_data import seed_preference
from trainer import snapshot
from trainer.config import DataConfig, GateConfig, TrainConfig, to_arguments
from trainer.export import export_records, write_jsonl
from trainer.job import RunOptions, run

FAST_GATE = GateConfig(samples=8, max_new_tokens=12, min_preference_examples=1, bootstrap_samples=200)
ROOT = Path(__file__).resolve().parents[1]


def options(tmp_path: Path, uri: str, **train: object) -> RunOptions:
    return RunOptions(
        snapshot=uri, registry=tmp_path / "models", train=TrainConfig(max_steps=3, **train), gate=FAST_GATE
    )


async def seed(tmp_path: Path, answers: int) -> None:
    async with await Database.open(tmp_path / "t.db") as database:
        await seed_preference(Repository(database), answers=answers)


async def take_snapshot(tmp_path: Path, model: Path, *, run: int = 1, parent: int | None = None) -> str:
    """What the bot does before a run: the dataset and manifest, written to the artifact store."""
    if parent is None:
        parent = ModelRegistry(tmp_path / "models").current_version()
    async with await Database.open(tmp_path / "t.db") as database:
        prepared = await prepare(
            # 40 answers to 12 questions, split by question: 0.4 holds out enough of them for
            # both labels to be in the held-out set (0.2 held out 4 disliked answers only).
            Repository(database),
            DataConfig(min_examples=8, held_out_fraction=0.4),
            run=run,
            parent=parent,
            base_model=str(model),
        )
    assert prepared.not_ready is None, prepared.not_ready
    uri = snapshot.run_uri(str(tmp_path / "artifacts"), run)
    snapshot.write(uri, prepared.manifest, prepared.dataset)
    return uri


def weights(folder: Path | str) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()


async def test_a_run_changes_the_weights_and_publishes_a_complete_version(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    uri = await take_snapshot(tmp_path, tiny_model_dir)
    result = run(options(tmp_path, uri))
    assert (result.run, result.status, result.parent, result.version) == (1, "published", 0, 1), result.reason
    assert snapshot.read_result(uri) == result  # what the bot records the run from

    registry = ModelRegistry(tmp_path / "models")
    assert registry.current_version() == 0  # the trainer never serves a version; the bot does, from the result
    current = registry.get(1)
    assert current.status == "published" and current.parent == 0
    counts = current.counts
    assert counts["train_examples"] + counts["held_out_examples"] + counts["held_out_repeats"] == 40
    assert current.config["train"]["learning_rate"] == 1e-4 and current.config["base_model"] == str(tiny_model_dir)
    assert current.config["run"] == 1 and current.config["data"]["min_examples"] == 8
    assert current.metrics["desirable_weight"] > 1.0 == current.metrics["undesirable_weight"]  # fewer likes, weighed up
    for name in (
        "train_steps",
        "seconds_per_step",
        "examples_per_s",
        "train_loss",
        "perplexity",
        "parent_perplexity",
        "distinct_2",
        "parent_distinct_2",
        "preference_accuracy",
    ):
        assert name in current.metrics, name
    assert current.metrics["train_steps"] == 3
    assert len(result.metrics["losses"]) == 3 and result.metrics["losses"][-1] == pytest.approx(
        result.metrics["train_loss"], abs=1e-5
    )  # the loss curve comes back with the result

    # 3 steps, 3 checkpoints: the weights after steps 1 and 2 were kept for early stopping.
    assert current.metrics["checkpoint_step"] == 3 and current.metrics["checkpoints_tried"] == 1
    assert current.config["train"]["checkpoints"] == 3
    # The reward model is kept beside the weights, fitted on the training examples.
    head = RewardHead.load(current.path)
    assert head is not None and head.examples == current.counts["train_examples"] == current.metrics["reward_examples"]

    before, after = weights(tiny_model_dir), weights(current.path)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert not list((tmp_path / "models" / ".staging").iterdir())

    # The bot serves it; the next run trains the current version (its reference model is version 1).
    registry.make_current(1)
    second = run(options(tmp_path, await take_snapshot(tmp_path, tiny_model_dir, run=2)))
    assert (second.parent, second.version) == (1, 2) and second.status in ("published", "rejected"), second.reason
    assert registry.get(2).parent == 1
    assert second.metrics["parent_preference_accuracy"] is not None, second.metrics.get("not_enough_data")
    assert not torch.equal(
        weights(registry.get(2).path)["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"]
    )


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
async def test_lora_run_publishes_a_plain_model_with_changed_attention(
    tmp_path: Path, tiny_model_dir: Path, tiny_llama_dir: Path, arch: str
) -> None:
    model = tiny_model_dir if arch == "gpt2" else tiny_llama_dir
    await seed(tmp_path, answers=40)
    result = run(options(tmp_path, await take_snapshot(tmp_path, model), lora=True, learning_rate=1e-3))
    assert result.status in ("published", "rejected") and result.version == 1, result.reason
    folder = tmp_path / "models" / "versions" / "0001"
    assert not (folder / "adapter_config.json").exists()  # merged: loads without peft
    # The adapter over version 0 is kept beside it (an engine such as vLLM loads it), MBs less.
    adapter = adapter_of(folder)
    assert (
        adapter is not None
        and (adapter / "adapter_model.safetensors").stat().st_size < (folder / "model.safetensors").stat().st_size
    )
    before, after = weights(model), weights(folder)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # The attention projections of each architecture, found by PEFT's table, not named here.
    adapted = ("c_attn",) if arch == "gpt2" else ("q_proj", "v_proj")
    assert changed and all(any(part in name for part in adapted) for name in changed), changed
    assert {part for part in adapted if any(part in name for name in changed)} == set(adapted)


async def test_a_lora_version_on_a_lora_parent_keeps_one_adapter_over_version_0(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    """The second LoRA version trains the first one's adapter on: version 0 plus its adapter
    is the version (what vLLM serves), with no merged parent in between."""
    from peft import PeftModel

    await seed(tmp_path, answers=40)
    first = run(options(tmp_path, await take_snapshot(tmp_path, tiny_llama_dir), lora=True, learning_rate=1e-3))
    registry = ModelRegistry(tmp_path / "models")
    # The pointer moved by hand: the subject is the adapter chain, not the gate's verdict on 3 steps.
    (tmp_path / "models" / "CURRENT").write_text(f"{first.version}\n")
    second = run(options(tmp_path, await take_snapshot(tmp_path, tiny_llama_dir, run=2), lora=True, learning_rate=1e-3))
    assert (second.parent, second.version) == (first.version, 2), second.reason
    folder, adapter = registry.get(2).path, adapter_of(registry.get(2).path)
    assert adapter is not None
    rebuilt = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), str(adapter))
    expected = rebuilt.merge_and_unload().state_dict()
    saved, parent = weights(folder), weights(registry.get(1).path)
    assert all(torch.allclose(saved[name], expected[name], atol=1e-5) for name in saved)
    assert any(not torch.equal(saved[name], parent[name]) for name in saved)  # it learned on from version 1


async def test_too_little_data_is_not_ready_with_the_reason(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=4)
    async with await Database.open(tmp_path / "t.db") as database:
        prepared = await prepare(
            Repository(database), DataConfig(min_examples=8), run=1, parent=0, base_model=str(tiny_model_dir)
        )
    assert prepared.not_ready is not None and "need at least 8" in prepared.not_ready
    assert prepared.manifest.counts["train_examples"] + prepared.manifest.counts["held_out_examples"] == 4


async def test_a_busy_registry_or_a_parent_no_longer_current_is_a_skip(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    uri = await take_snapshot(tmp_path, tiny_model_dir)
    registry = ModelRegistry(tmp_path / "models")
    with registry.training_lock():
        busy = run(options(tmp_path, uri))
    assert (busy.status, busy.reason) == ("skipped", "another training run is in progress")
    assert snapshot.read_result(uri) == busy

    stale = await take_snapshot(tmp_path, tiny_model_dir, run=2, parent=3)  # taken on a version since replaced
    skipped = run(options(tmp_path, stale))
    assert skipped.status == "skipped" and "version 0 became current after the snapshot" in skipped.reason
    assert registry.versions() == []


async def test_a_sabotaged_run_is_rejected_and_the_parent_stays_current(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    result = run(options(tmp_path, await take_snapshot(tmp_path, tiny_model_dir), learning_rate=0.05))
    assert result.status == "rejected", result.metrics
    assert "perplexity" in result.reason
    registry = ModelRegistry(tmp_path / "models")
    assert registry.current_version() == 0
    [rejected] = registry.versions()
    assert (
        rejected.status == "rejected"
        and rejected.reasons
        and rejected.metrics["perplexity"] > rejected.metrics["parent_perplexity"]
    )


async def test_a_crash_mid_run_is_recorded_and_leaves_the_registry_valid(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(tmp_path, answers=40)

    def crash(model, tokenizer, folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr("trainer.job.save_model", crash)
    uri = await take_snapshot(tmp_path, tiny_model_dir)
    result = run(options(tmp_path, uri))
    assert result.status == "failed" and "OSError: disk full" in result.reason
    assert snapshot.read_result(uri) == result
    registry = ModelRegistry(tmp_path / "models")
    assert registry.versions() == [] and registry.current_version() == 0
    assert not list((tmp_path / "models" / ".staging").iterdir())


async def test_the_trainer_process_never_opens_a_database(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    uri = await take_snapshot(tmp_path, tiny_model_dir)
    (tmp_path / "t.db").unlink()  # no database anywhere the trainer could find
    for leftover in tmp_path.glob("t.db-*"):
        leftover.unlink()
    # In the trainer's process SQLite cannot be opened at all.
    code = (
        "import sqlite3, sys\n"
        "def forbidden(*args, **kwargs):\n"
        "    raise AssertionError('the trainer opened a database')\n"
        "sqlite3.connect = forbidden\n"
        "from trainer.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    job = to_arguments(TrainConfig(max_steps=2), GateConfig(samples=4, max_new_tokens=8))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, "run", "--snapshot", uri, "--registry", str(tmp_path / "models"), *job],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["status"] in ("published", "rejected") and printed["version"] == 1
    assert snapshot.read_result(uri) == snapshot.RunResult(**printed)
    assert not list(tmp_path.rglob("*.db"))


async def test_a_damaged_or_foreign_snapshot_is_one_clear_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    uri = await take_snapshot(tmp_path, tiny_model_dir)
    manifest = Path(uri) / snapshot.MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 99}))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "trainer", "run", "--snapshot", uri, "--registry", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert done.returncode == 2
    assert "cannot read the snapshot" in done.stderr and "format 99" in done.stderr
    assert "Traceback" not in done.stderr
    shutil.rmtree(uri)
    with pytest.raises(snapshot.SnapshotError, match="not found"):
        snapshot.read(uri)


async def test_exported_files_load_with_datasets_as_trl_expects(tmp_path: Path) -> None:
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    async with await Database.open(tmp_path / "t.db") as database:
        repo = Repository(database)
        seeded = await seed_preference(repo, answers=12)
        await repo.record_correction(response_id=seeded.response_ids[0], author="fixer", text="A kinder answer.")
    expected = {
        "kto": {"prompt", "completion", "label"},
        "dpo": {"prompt", "chosen", "rejected"},
        "sft": {"prompt", "completion"},
    }
    for fmt, columns in expected.items():
        out = tmp_path / f"{fmt}.jsonl"
        records = await export_records(tmp_path / "t.db", fmt=fmt)
        with open(out, "w", encoding="utf-8") as handle:
            count = write_jsonl(records, handle)
        dataset = load_dataset("json", data_files=str(out), split="train")
        assert set(dataset.column_names) == columns and len(dataset) == count > 0
        assert not is_conversational(dataset[0])
        assert dataset[0]["prompt"].endswith("Bot:")
    kto = load_dataset("json", data_files=str(tmp_path / "kto.jsonl"), split="train")
    assert kto.features["label"].dtype == "bool"
    assert sum(kto["label"]) == seeded.liked + 1 and len(kto) == 12 + 1
    assert json.loads((tmp_path / "dpo.jsonl").read_text().splitlines()[0])["chosen"] == " A kinder answer."


def test_the_gate_rejects_a_diverged_model_instead_of_failing(tiny_model_dir: Path) -> None:
    from trainer.dataset import Example, Pair
    from trainer.evaluate import run_gate
    from trainer.models import load_causal_lm

    parent, tokenizer = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    broken, _ = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    with torch.no_grad():
        for parameter in broken.parameters():
            parameter.fill_(float("nan"))
    held_out = [
        Example("User: hi\nBot:", " Hello friend.", True, "g1"),
        Example("User: hi\nBot:", " Pizza.", False, "g2"),
    ]
    corrections = [Pair("User: hello\nBot:", " Hello! How can I help you today?", " Pizza.", "g3", "correction")]
    gate = run_gate(
        candidate=broken,
        parent=parent,
        tokenizer=tokenizer,
        held_out=held_out,
        held_out_pairs=corrections,
        config=GateConfig(samples=4, max_new_tokens=6, min_preference_examples=1, min_corrections=1),
    )
    assert not gate.passed
    assert gate.candidate.chrf == 0.0 and gate.parent.chrf > 0.0
    assert any("chrF" in reason for reason in gate.reasons) == (gate.parent.chrf > GateConfig().chrf_margin)
    assert any("perplexity" in reason for reason in gate.reasons)
    assert any("distinct-2" in reason for reason in gate.reasons)
    assert gate.parent_preference_accuracy == 0.5
