"""Training runs on the tiny model: publish, skip, reject, crash, export (real SQLite, real TRL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from storage.database import Database
from storage.registry import ModelRegistry
from storage.repository import Repository
from tests.feedback_data import seed_preference
from trainer.config import DataConfig, GateConfig, TrainConfig
from trainer.export import export_records, write_jsonl
from trainer.job import RunOptions, run_async

FAST_GATE = GateConfig(samples=8, max_new_tokens=12)


def options(tmp_path: Path, model: Path, **train: object) -> RunOptions:
    return RunOptions(
        db=tmp_path / "t.db",
        registry=tmp_path / "models",
        base_model=str(model),
        data=DataConfig(min_examples=8),
        train=TrainConfig(max_steps=3, **train),
        gate=FAST_GATE,
    )


async def seed(tmp_path: Path, answers: int) -> None:
    async with await Database.open(tmp_path / "t.db") as database:
        await seed_preference(Repository(database), answers=answers)


async def runs(tmp_path: Path) -> list[tuple]:
    async with await Database.open(tmp_path / "t.db") as database, database.reading() as db:
        cursor = await db.execute(
            "SELECT status, parent_version, new_version, examples, desirable, undesirable, held_out, reason,"
            " finished_at IS NOT NULL FROM training_runs ORDER BY id"
        )
        return [tuple(row) for row in await cursor.fetchall()]


def weights(folder: Path | str) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()


async def test_a_run_changes_the_weights_and_publishes_a_complete_version(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    result = await run_async(options(tmp_path, tiny_model_dir))
    assert (result.status, result.parent, result.version) == ("published", 0, 1), result.reason

    registry = ModelRegistry(tmp_path / "models")
    current = registry.current()
    assert current is not None and current.version == 1 and current.parent == 0
    assert current.counts["train_examples"] + current.counts["held_out_examples"] == 40
    assert current.config["train"]["learning_rate"] == 1e-4 and current.config["base_model"] == str(tiny_model_dir)
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

    before, after = weights(tiny_model_dir), weights(current.path)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before)

    [row] = await runs(tmp_path)
    assert row[:3] == ("published", 0, 1)
    assert row[3] == current.counts["train_examples"] and row[4] + row[5] == row[3]
    assert row[8] == 1
    assert not list((tmp_path / "models" / ".staging").iterdir())

    # The next run trains the current version (its reference model is version 1).
    second = await run_async(options(tmp_path, tiny_model_dir))
    assert (second.parent, second.version) == (1, 2) and second.status in ("published", "rejected"), second.reason
    assert registry.get(2).parent == 1
    assert second.metrics["parent_preference_accuracy"] is not None
    assert not torch.equal(
        weights(registry.get(2).path)["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"]
    )


async def test_lora_run_publishes_a_plain_model_with_changed_attention(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    result = await run_async(options(tmp_path, tiny_model_dir, lora=True, learning_rate=1e-3))
    assert result.status in ("published", "rejected") and result.version == 1, result.reason
    folder = tmp_path / "models" / "versions" / "0001"
    assert not (folder / "adapter_config.json").exists()  # merged: loads without peft
    before, after = weights(tiny_model_dir), weights(folder)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all("c_attn" in name for name in changed)


async def test_too_little_data_is_skipped_with_the_reason(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=4)
    result = await run_async(options(tmp_path, tiny_model_dir))
    assert result.status == "skipped"
    assert "need at least 8" in result.reason
    [row] = await runs(tmp_path)
    assert row[0] == "skipped" and "need at least 8" in row[7] and row[8] == 1
    assert ModelRegistry(tmp_path / "models").versions() == []


async def test_a_run_closes_an_interrupted_run_and_refuses_to_run_twice(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=4)
    async with await Database.open(tmp_path / "t.db") as database:
        await Repository(database).start_training_run(parent_version=0)  # a trainer that died mid-run
    registry = ModelRegistry(tmp_path / "models")
    with registry.training_lock():
        busy = await run_async(options(tmp_path, tiny_model_dir))
    assert (busy.status, busy.reason) == ("skipped", "another training run is in progress")
    await run_async(options(tmp_path, tiny_model_dir))
    statuses = [(row[0], row[7]) for row in await runs(tmp_path)]
    assert statuses[0] == ("failed", "interrupted: the trainer process ended mid-run")
    assert statuses[1] == ("skipped", "another training run is in progress")
    assert statuses[2][0] == "skipped" and "need at least 8" in statuses[2][1]


async def test_a_sabotaged_run_is_rejected_and_the_parent_stays_current(tmp_path: Path, tiny_model_dir: Path) -> None:
    await seed(tmp_path, answers=40)
    result = await run_async(options(tmp_path, tiny_model_dir, learning_rate=0.05))
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
    [row] = await runs(tmp_path)
    assert row[:3] == ("rejected", 0, 1) and "perplexity" in row[7]


async def test_a_crash_mid_run_is_recorded_and_leaves_the_registry_valid(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(tmp_path, answers=40)

    def crash(model, tokenizer, folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr("trainer.job.save_model", crash)
    result = await run_async(options(tmp_path, tiny_model_dir))
    assert result.status == "failed" and "disk full" in result.reason
    [row] = await runs(tmp_path)
    assert row[0] == "failed" and "OSError: disk full" in row[7]
    registry = ModelRegistry(tmp_path / "models")
    assert registry.versions() == [] and registry.current_version() == 0
    assert not list((tmp_path / "models" / ".staging").iterdir())


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
        config=GateConfig(samples=4, max_new_tokens=6, min_preference_pairs=1),
    )
    assert not gate.passed
    assert gate.candidate.chrf == 0.0 and gate.parent.chrf > 0.0
    assert any("chrF" in reason for reason in gate.reasons) == (gate.parent.chrf > GateConfig().chrf_margin)
    assert any("perplexity" in reason for reason in gate.reasons)
    assert any("distinct-2" in reason for reason in gate.reasons)
    assert gate.parent_preference_accuracy == 0.5
