"""The reward model: how much people would like an answer, learned from their votes.

A linear head on the served model's own features: an answer's feature vector is the
model's last hidden state averaged over the answer's tokens, read with the dialogue
before it as the model sees it (``ModelDialogue``); its score is a logistic regression
on those features (standardised), fitted by the trainer on the run's training examples
(``trainer.reward``) and kept with the version as ``reward.json``. The bot loads it with
the model and shows the best of ``THUMBTUNE_BEST_OF`` sampled candidates.

A head on the model's features costs one forward pass over the candidates and nothing
to store but a vector; ``bench.learning`` measures what it buys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage.dialogue import ModelDialogue

log = logging.getLogger(__name__)

FILE = "reward.json"
FORMAT = 1


@dataclass(frozen=True)
class RewardHead:
    weight: np.ndarray  # [features], on standardised features
    bias: float
    mean: np.ndarray  # [features]: the standardisation
    scale: np.ndarray
    examples: int  # training examples it was fitted on
    auc: float | None = None  # on held-out votes (None: not enough of them)
    auc_interval: tuple[float, float] | None = None  # 95 %, bootstrap
    # Whether it ranks best-of-n candidates: only with held-out evidence that it beats chance
    # (the trainer decides, with its reward_min_auc); a head without it would only trade
    # variety for its own noise.
    ranks: bool = False

    @staticmethod
    def evidence(auc_interval: tuple[float, float] | None, floor: float = 0.5) -> bool:
        """Held-out evidence that the head ranks better than chance: the lower end of its AUC's
        95 % interval above ``floor``."""
        return auc_interval is not None and auc_interval[0] > floor

    def check(self) -> None:
        """ValueError unless the head is one finite linear model (reward.json is input: it may
        come from a trainer host or a shared bucket)."""
        shape = self.weight.shape
        if len(shape) != 1 or not shape[0] or self.mean.shape != shape or self.scale.shape != shape:
            raise ValueError("weight, mean and scale must be vectors of one length")
        numbers = np.concatenate([self.weight, self.mean, self.scale, [self.bias]])
        if not np.isfinite(numbers).all() or (self.scale <= 0).any():
            raise ValueError("not finite, or a scale that is not positive")
        if self.auc is not None and not (isinstance(self.auc, (int, float)) and 0.0 <= self.auc <= 1.0):
            raise ValueError("auc must be a number from 0 to 1")

    def score(self, features: np.ndarray) -> np.ndarray:
        """The logit of 'people like it', one per row of ``features``."""
        logits: np.ndarray = ((features - self.mean) / self.scale) @ self.weight + self.bias
        return logits

    def save(self, folder: Path) -> None:
        record = {
            "format": FORMAT,
            "weight": self.weight.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "examples": self.examples,
            "auc": self.auc,
            "auc_interval": list(self.auc_interval) if self.auc_interval else None,
            "ranks": self.ranks,
        }
        (folder / FILE).write_text(json.dumps(record), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path | str) -> RewardHead | None:
        """The head kept with a version; None when it has none, or one this code cannot read
        (logged: the bot then shows the first candidate, as without a reward model)."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("format") != FORMAT:
                raise ValueError(f"format {record.get('format')!r}, this code reads {FORMAT}")
            interval = record.get("auc_interval")
            interval = (float(interval[0]), float(interval[1])) if interval else None
            ranks = record.get("ranks")
            head = cls(
                weight=np.asarray(record["weight"], dtype=np.float64),
                bias=float(record["bias"]),
                mean=np.asarray(record["mean"], dtype=np.float64),
                scale=np.asarray(record["scale"], dtype=np.float64),
                examples=int(record["examples"]),
                auc=record.get("auc"),
                auc_interval=interval,
                # Written before the trainer decided: it ranks only with the evidence.
                ranks=bool(ranks) if ranks is not None else cls.evidence(interval),
            )
            head.check()
            return head
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s cannot be read (%s); answers are not ranked by a reward model", path, exc)
            return None


def answer_features(
    model: Any, tokenizer: Any, items: Sequence[tuple[str, str]], *, max_length: int = 256, batch_size: int = 8
) -> np.ndarray:
    """[items, hidden] float64: the last hidden state averaged over each answer's tokens,
    for (stored dialogue, answer) pairs."""
    import torch

    device = next(model.parameters()).device
    dialogue = ModelDialogue(tokenizer)
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = dialogue.answer_batch(items[start : start + batch_size], max_length=max_length)
            hidden = model(
                input_ids=batch.ids.to(device), attention_mask=batch.mask.to(device), output_hidden_states=True
            ).hidden_states[-1]
            for i, (begin, end) in enumerate(zip(batch.starts, batch.lengths, strict=True)):
                span = hidden[i, begin:end] if end > begin else hidden[i, end - 1 : end]  # an empty answer
                out.append(span.float().mean(dim=0).cpu().numpy())
    return np.asarray(out, dtype=np.float64)
