"""One training run: a snapshot -> KTO on the parent -> eval gate -> registry -> a result.

Runs in its own process (``python -m trainer run --snapshot URI``), never inside the
bot, and never opens the bot's database: it reads the run's snapshot (trainer.snapshot)
and the parent model, writes the new version into the registry (``published`` when it
passed the gate, else kept as ``rejected`` with the gate's reasons, never current) and
writes the run's result beside the snapshot. The bot records the run from that result
and only then makes a published version current: a run without a result serves nothing.
A crash leaves only a staging folder, which the registry removes; ``versions/`` and the
current pointer are untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from storage.dialogue import ModelDialogue
from storage.redact import KINDS as REDACT_KINDS
from storage.redact import Redactor
from storage.registry import ADAPTER_DIR, BASE_VERSION, PUBLISHED, REJECTED, ModelRegistry, RegistryError, adapter_of
from storage.reward import RewardHead
from trainer import snapshot
from trainer.changes import FILE as CHANGES_FILE
from trainer.changes import what_changed
from trainer.config import GateConfig, JobConfig, TrainConfig, as_dict
from trainer.dataset import FeedbackDataset, balanced_weights, kto_records
from trainer.evaluate import GateResult, run_gate
from trainer.models import load_causal_lm, training_device
from trainer.progress import percent_steps, show_bars
from trainer.reward import fit_reward
from trainer.snapshot import Manifest, RunResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions(JobConfig):
    """A run's job options (:class:`~trainer.config.JobConfig`: the snapshot's URI, the
    registry, the versions kept) with its training recipe and eval gate."""

    train: TrainConfig = field(default_factory=TrainConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass(frozen=True)
class TrainStats:
    steps: int
    seconds: float
    examples_per_s: float
    final_loss: float | None
    losses: tuple[float, ...] = ()  # the loss at every logged step
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def as_dict(self) -> dict[str, float | int | list[float] | None]:
        return {
            "desirable_weight": self.desirable_weight,
            "undesirable_weight": self.undesirable_weight,
            "train_steps": self.steps,
            "train_seconds": round(self.seconds, 3),
            "seconds_per_step": round(self.seconds / max(self.steps, 1), 4),
            "examples_per_s": round(self.examples_per_s, 3),
            "train_loss": self.final_loss,
            "losses": [round(loss, 5) for loss in self.losses],
        }


def run(options: RunOptions) -> RunResult:
    """Train on the snapshot, publish, and write the result beside the snapshot (also on failure).

    Under a multi-process launcher (``torchrun``, ``accelerate launch --multi_gpu``) every
    rank trains on its shard of the data; only rank 0 holds the registry's lock, runs the
    gate, publishes and writes the result, so a run is published and recorded once.
    """
    manifest, dataset = snapshot.read(options.snapshot)  # unreadable: raises, and the bot records no result
    ranks = Ranks.from_environment()
    result = _run(options, manifest, dataset, ranks)
    if ranks.main:
        snapshot.write_result(options.snapshot, result)
    return result


@dataclass(frozen=True)
class Ranks:
    """This process's place among the launcher's processes (one, unless a launcher started more)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Ranks:
        """From the variables torchrun and ``accelerate launch`` set (RANK, WORLD_SIZE, LOCAL_RANK)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(rank=int(os.environ.get("RANK", "0")), world=world, local=int(os.environ.get("LOCAL_RANK", "0")))

    def share(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank (the process group starts here when it has not yet)."""
        if self.world == 1:
            return value
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list

        PartialState()  # joins the launcher's process group (gloo on CPU, NCCL on GPUs)
        shared = [value]
        broadcast_object_list(shared, from_process=0)
        return shared[0]


def _run(options: RunOptions, manifest: Manifest, dataset: FeedbackDataset, ranks: Ranks) -> RunResult:
    registry = ModelRegistry(options.registry, keep=options.keep_versions)
    parent = manifest.parent
    with contextlib.ExitStack() as held:
        skip: str | None = None
        if ranks.main:
            try:
                held.enter_context(registry.training_lock())
                current = registry.current_version()  # read under the lock: no other run publishes now
                if current != parent:
                    skip = (
                        f"version {current} became current after the snapshot was taken on version {parent}; "
                        "the next run trains on it"
                    )
            except RegistryError as exc:
                skip = str(exc)
        skip = ranks.share(skip)  # every rank skips, or none
        if skip is not None:
            return RunResult(manifest.run, "skipped", parent, reason=skip)
        try:
            if ranks.main:
                log.info("training run %d on version %d: %s", manifest.run, parent, dataset.counts())
            if ranks.world > 1:
                log.info("rank %d of %d", ranks.rank, ranks.world)
            published = train_and_publish(options, registry, dataset, manifest, ranks)
            if published is None:  # not rank 0: it trained its shard; rank 0 reports
                return RunResult(manifest.run, "trained", parent, reason=f"rank {ranks.rank} of {ranks.world}")
            return RunResult(
                manifest.run,
                published.status,
                parent,
                published.version,
                published.reason,
                published.metrics,
                tracking=published.tracking,
            )
        except Exception as exc:
            log.exception("training run %d failed", manifest.run)
            return RunResult(manifest.run, "failed", parent, reason=f"{type(exc).__name__}: {exc}"[:500])


@dataclass(frozen=True)
class _Published:
    status: str
    version: int
    reason: str | None
    metrics: dict[str, Any]
    tracking: str | None = None


def train_and_publish(
    options: RunOptions, registry: ModelRegistry, dataset: FeedbackDataset, manifest: Manifest, ranks: Ranks = Ranks()
) -> _Published | None:
    """Train; on rank 0 also gate and publish (None on the other ranks)."""
    config, parent, base_model = options.train, manifest.parent, manifest.base_model
    torch.set_num_threads(config.threads)
    device = training_device(config.device, local_rank=ranks.local if ranks.world > 1 else None)
    source = base_model if parent == BASE_VERSION else str(registry.local_copy(parent))
    # Only rank 0 writes into the registry; the others need a scratch folder for TRL alone.
    folder_of = registry.staging() if ranks.main else _scratch_folder()
    with folder_of as folder:
        model, tokenizer = load_causal_lm(source, device=device)
        # With LoRA the version also keeps its adapter over version 0 (vLLM loads it into a
        # running server): from version 0, or by training on the parent's own adapter.
        parent_adapter = adapter_of(source) if config.lora and parent != BASE_VERSION else None
        if parent_adapter is not None:
            model = _with_adapter(base_model, parent_adapter, device)
        keep_adapter = folder / ADAPTER_DIR if config.lora and (parent == BASE_VERSION or parent_adapter) else None
        reference, _ = load_causal_lm(source, device=device)
        reference.eval()
        scratch = folder / ".scratch"
        model, stats, checkpoints = train_kto(
            model=model,
            reference=reference,
            tokenizer=tokenizer,
            dataset=dataset,
            config=config,
            scratch=scratch,
            keep_adapter=keep_adapter,
        )
        tracking = _keep_tracking(config.report_to, scratch, options.snapshot) if ranks.main else None
        shutil.rmtree(scratch, ignore_errors=True)
        if not ranks.main:
            return None
        base = None if parent == BASE_VERSION else _load_base(base_model, device)

        def gate_of(candidate: PreTrainedModel) -> GateResult:
            return run_gate(
                candidate=candidate,
                parent=reference,
                tokenizer=tokenizer,
                base=base,
                held_out=dataset.held_out,
                held_out_pairs=dataset.held_out_pairs,
                config=options.gate,
                seed=config.seed,
                max_length=config.max_length,
            )

        gate, chosen = _latest_passing(model, stats.steps, checkpoints, gate_of)
        save_model(model, tokenizer, folder)
        reward_metrics: dict[str, Any] = {}
        if config.reward_model:
            reward = fit_reward(
                model,
                tokenizer,
                dataset.train,
                dataset.held_out,
                min_examples=options.gate.min_preference_examples,
                samples=options.gate.bootstrap_samples,
                seed=config.seed,
                max_length=config.max_length,
            )
            if reward is not None:
                reward = dataclasses.replace(
                    reward, ranks=RewardHead.evidence(reward.auc_interval, config.reward_min_auc)
                )
                reward.save(folder)
                reward_metrics = {
                    "reward_auc": reward.auc,
                    "reward_auc_interval": list(reward.auc_interval) if reward.auc_interval else None,
                    "reward_examples": reward.examples,
                    "reward_held_out": len(dataset.held_out),
                    "reward_ranks": reward.ranks,
                }
                if not reward.ranks:
                    log.info(
                        "the reward model does not rank best-of-n: held-out AUC %s, not above %s with 95%% confidence",
                        reward.auc,
                        config.reward_min_auc,
                    )
        # What it learned, kept with the version: answers side by side, words, data, the gate.
        changes = what_changed(
            parent=reference,
            candidate=model,
            tokenizer=tokenizer,
            dataset=dataset,
            gate=gate,
            seed=config.seed,
            max_new_tokens=options.gate.max_new_tokens,
            # What the bot scrubbed from the snapshot (a manifest from before the setting: everything).
            redact=Redactor.from_kinds(manifest.data.get("redact", REDACT_KINDS)),
        )
        (folder / CHANGES_FILE).write_text(json.dumps(changes, ensure_ascii=False, indent=1), encoding="utf-8")
        status = PUBLISHED if gate.passed else REJECTED
        metrics = {**stats.as_dict(), **gate.metrics(), **chosen.as_dict(), **reward_metrics, "processes": ranks.world}
        info = registry.publish(
            folder,
            parent=parent,
            status=status,
            make_current=False,  # the bot serves it once it has recorded the run (bot.training)
            metrics=metrics,
            counts=dataset.counts(),
            config={
                "base_model": base_model,
                "run": manifest.run,
                "vote_cutoff": manifest.vote_cutoff,
                "data": manifest.data,
                "train": as_dict(config),
                "gate": as_dict(options.gate),
            },
            reasons=gate.reasons,
        )
    _log_gate(info.version, gate)
    return _Published(status, info.version, "; ".join(gate.reasons) or None, metrics, tracking)


@dataclass(frozen=True)
class _Chosen:
    """Which of a run's checkpoints is published, and why the later ones were not."""

    step: int
    tried: int  # checkpoints put through the gate, the end of the run included
    later_reasons: tuple[str, ...] = ()  # the gate's reasons against the end of the run

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkpoint_step": self.step,
            "checkpoints_tried": self.tried,
            "end_of_run_reasons": list(self.later_reasons),
        }


def _latest_passing(
    model: PreTrainedModel,
    steps: int,
    checkpoints: list[tuple[int, dict[str, torch.Tensor]]],
    gate_of: Callable[[PreTrainedModel], GateResult],
) -> tuple[GateResult, _Chosen]:
    """Early stopping: the end of the run if it passes the gate, else the latest earlier
    checkpoint that does, loaded into ``model``. When none passes, ``model`` keeps the
    end of the run and its gate result (the version is kept as rejected)."""
    final = gate_of(model)
    if final.passed or not checkpoints:
        return final, _Chosen(steps, 1)
    end = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}
    for tried, (step, weights) in enumerate(reversed(checkpoints), start=2):
        _load_weights(model, weights)
        gate = gate_of(model)
        log.info("checkpoint at step %d: %s", step, "passes the gate" if gate.passed else "; ".join(gate.reasons))
        if gate.passed:
            return gate, _Chosen(step, tried, final.reasons)
    _load_weights(model, end)
    return final, _Chosen(steps, len(checkpoints) + 1)


def _load_weights(model: PreTrainedModel, weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in weights:
                parameter.copy_(weights[name])


def _keep_tracking(report_to: str, scratch: Path, snapshot_uri: str) -> str | None:
    """Where the run's training curves can be seen: TensorBoard's event files are copied into
    the run's folder of the artifact store; for the hosted trackers, their link (best effort)."""
    if report_to == "tensorboard":
        logs = scratch / "runs"
        if not logs.is_dir():
            log.warning("--report-to tensorboard, but no event files were written")
            return None
        target = f"{snapshot_uri.rstrip('/')}/{snapshot.TENSORBOARD}"
        fs, root = fsspec.core.url_to_fs(target)
        fs.put(str(logs) + "/", root + "/", recursive=True)
        log.info("TensorBoard event files: %s (tensorboard --logdir %s)", target, target)
        return target
    if report_to == "wandb":
        import wandb

        return str(wandb.run.url) if wandb.run is not None else None
    if report_to == "mlflow":
        import mlflow

        return str(mlflow.get_tracking_uri())
    return None if report_to == "none" else report_to


@contextlib.contextmanager
def _scratch_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="thumbtune-rank-") as folder:
        yield Path(folder)


def train_kto(
    *,
    model: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: FeedbackDataset,
    config: TrainConfig,
    scratch: Path,
    keep_adapter: Path | None = None,
) -> tuple[PreTrainedModel, TrainStats, list[tuple[int, dict[str, torch.Tensor]]]]:
    """Fine-tune ``model`` with TRL's KTOTrainer against ``reference``: the trained model
    (LoRA merged; the adapter saved first into ``keep_adapter`` if given; a ``model`` that
    is a PEFT model already trains its own adapter on), its statistics, and the weights at
    ``config.checkpoints - 1`` evenly spaced earlier steps ((step, trained weights by name),
    oldest first; none with LoRA, whose adapters are merged away at the end)."""
    # Imported here: TRL is slow to import and only this step needs it.
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import KTOConfig, KTOTrainer

    if config.batch_size < 2:
        raise ValueError("KTO needs a batch size of at least 2")
    records = kto_records(dataset.train, ModelDialogue(tokenizer))
    random.Random(config.seed).shuffle(records)  # the trainer's own order is not to be relied on
    desirable_weight, undesirable_weight = (1.0, 1.0)
    if config.balance_weights:
        desirable_weight, undesirable_weight = balanced_weights(
            desirable=dataset.desirable, undesirable=dataset.undesirable
        )
    cuda = next(model.parameters()).device.type == "cuda"
    args = KTOConfig(
        output_dir=str(scratch),
        learning_rate=config.learning_rate,
        beta=config.beta,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        max_length=config.max_length,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        seed=config.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),  # TRL turns bf16 on by default, wrong on a CPU
        **_no_checkpointing(KTOConfig),  # TRL turns it on by default: slower, and no memory to save here
        logging_steps=1,
        save_strategy="no",
        report_to=config.report_to,  # tensorboard: event files under output_dir/runs (kept by _keep_tracking)
        disable_tqdm=not show_bars(),  # a bar in a terminal (thumbtune train --now); the log has the percentage
        dataloader_num_workers=0,
    )
    peft_config = None
    if config.lora and not _is_peft(model):
        from peft import LoraConfig

        targets, fan_in_fan_out = lora_targets(model)
        peft_config = LoraConfig(
            r=config.lora_rank,
            lora_alpha=2 * config.lora_rank,
            target_modules=targets,
            fan_in_fan_out=fan_in_fan_out,
            task_type="CAUSAL_LM",
        )
    keep = _KeepCheckpoints(0 if config.lora else config.checkpoints - 1)
    trainer = KTOTrainer(
        model=model,
        ref_model=reference,  # explicit: with None TRL looks the model up on the Hub
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_LogProgress(), keep],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; _LogProgress logs instead
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    steps = int(trainer.state.global_step)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    trained = trainer.model
    if config.lora:
        from peft import PeftModel

        assert isinstance(trained, PeftModel), "TRL wraps the model in PEFT when given a peft_config"
        if keep_adapter is not None:
            trained.save_pretrained(str(keep_adapter))  # adapter_config.json + adapter_model.safetensors
        trained = trained.merge_and_unload()  # a plain model again, loadable without peft
    if not isinstance(trained, PreTrainedModel):
        raise TypeError(f"training ended with a {type(trained).__name__}, not a transformers model")
    trained.eval()
    examples = steps * config.batch_size * trainer.args.world_size / max(seconds, 1e-9)  # all processes
    stats = TrainStats(
        steps=steps,
        seconds=seconds,
        examples_per_s=examples,
        final_loss=losses[-1] if losses else None,
        losses=tuple(float(loss) for loss in losses),
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    return trained, stats, [(step, weights) for step, weights in keep.kept if step < steps]


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _with_adapter(base_model: str, adapter: Path, device: torch.device) -> Any:
    """Version 0 with a parent's adapter on it, the adapter trainable."""
    from peft import PeftModel

    base, _ = load_causal_lm(base_model, device=device)
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=True)


def _no_checkpointing(config_type: type) -> dict[str, Any]:
    """Activation checkpointing off, under the name this transformers knows (5.2x renamed
    ``gradient_checkpointing`` to ``activation_checkpointing``)."""
    names = {item.name for item in dataclasses.fields(config_type)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: False}


def lora_targets(model: PreTrainedModel) -> tuple[list[str] | str, bool]:
    """The modules LoRA adapts for this architecture, and whether their weights are stored
    (in, out) as GPT-2's ``Conv1D`` are: PEFT's own table (attention projections: GPT-2's
    ``c_attn``, Llama's and Qwen's ``q_proj``/``v_proj``, ...), else every linear layer."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as KNOWN
    from transformers.pytorch_utils import Conv1D

    targets = KNOWN.get(str(getattr(model.config, "model_type", "")))
    conv1d = any(isinstance(module, Conv1D) for module in model.modules())
    return (list(targets) if targets else "all-linear"), conv1d


def _load_base(source: str, device: torch.device) -> PreTrainedModel | None:
    """Version 0 for the gate's implicit rewards; without it the parent stands in."""
    try:
        model, _ = load_causal_lm(source, device=device)
    except (OSError, ValueError) as exc:
        log.warning("base model %s not loadable (%s); preference accuracy is measured against the parent", source, exc)
        return None
    model.eval()
    return model


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _log_gate(version: int, gate: GateResult) -> None:
    if gate.passed:
        # Published, not yet current: the bot moves CURRENT once it has recorded the run's result.
        log.info("version %d passed the eval gate and is published: %s", version, gate.metrics())
    else:
        log.warning("version %d rejected by the eval gate: %s", version, "; ".join(gate.reasons))


class _KeepCheckpoints(TrainerCallback):
    """A copy (on the CPU) of the trained weights at ``count`` evenly spaced steps before the end."""

    def __init__(self, count: int) -> None:
        self.count = max(count, 0)
        self._at: set[int] = set()
        self.kept: list[tuple[int, dict[str, torch.Tensor]]] = []

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        parts = self.count + 1
        self._at = {state.max_steps * part // parts for part in range(1, parts)} - {0, state.max_steps}

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if state.global_step in self._at and model is not None:
            weights = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}
            self.kept.append((state.global_step, weights))


class _LogProgress(TrainerCallback):
    """Progress and loss in our log: the first step, about every tenth of the run, the last."""

    def __init__(self) -> None:
        self._at: set[int] = set()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._at = percent_steps(state.max_steps)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs and state.global_step in self._at:
            done = 100 * state.global_step / max(state.max_steps, 1)
            log.info("step %d/%d (%.0f %%) loss %.4f", state.global_step, state.max_steps, done, logs["loss"])
