"""Fitting the reward model (storage.reward.RewardHead) in a training run.

Logistic regression of the label (liked or not) on the new version's answer features,
standardised, with an L2 penalty, each label weighted to count the same (as KTO's
examples are), by Newton's method: a few hundred examples and a few hundred features
solve in milliseconds. Its agreement with the held-out votes is the AUC of its scores
(liked above disliked), with a 95 % bootstrap interval, or "not enough data" under
``min_examples`` held-out answers of either label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from storage.reward import RewardHead, answer_features
from trainer.dataset import Example
from trainer.evaluate import paired_auc_difference, pairwise_wins

log = logging.getLogger(__name__)

L2 = 1.0  # on standardised features; bench.learning's reward AUC was measured with it
NEWTON_STEPS = 25


def fit_logistic(features: np.ndarray, labels: np.ndarray, *, l2: float = L2) -> tuple[np.ndarray, float]:
    """(weight, bias) of a class-balanced, L2-penalised logistic regression (bias not penalised)."""
    n, d = features.shape
    x = np.hstack([features, np.ones((n, 1))])
    positives = labels.sum()
    weights = np.where(labels > 0, n / (2 * max(positives, 1)), n / (2 * max(n - positives, 1)))
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    beta = np.zeros(d + 1)
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(x @ beta)))
        gradient = x.T @ (weights * (p - labels)) + penalty * beta
        hessian = (x * (weights * p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def fit_reward(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Sequence[Example],
    held_out: Sequence[Example],
    *,
    min_examples: int,
    samples: int,
    seed: int,
    max_length: int = 256,
) -> RewardHead | None:
    """The reward head for ``model`` (its own features), or None without both labels to learn from."""
    labels = np.array([e.label for e in train], dtype=np.float64)
    if labels.sum() < 1 or labels.sum() > len(labels) - 1:
        return None
    features = answer_features(model, tokenizer, [(e.prompt, e.completion) for e in train], max_length=max_length)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    weight, bias = fit_logistic((features - mean) / scale, labels)
    head = RewardHead(weight=weight, bias=bias, mean=mean, scale=scale, examples=len(train))
    liked = [e for e in held_out if e.label]
    disliked = [e for e in held_out if not e.label]
    if len(liked) < min_examples or len(disliked) < min_examples:
        return head
    scores = head.score(
        answer_features(
            model, tokenizer, [(e.prompt, e.completion) for e in (*liked, *disliked)], max_length=max_length
        )
    )
    cut = len(liked)
    auc = float(pairwise_wins(scores[:cut], scores[cut:]).mean())
    both = (scores[:cut], scores[cut:])
    # The same resamples for "both models" leave the first interval: the AUC's own.
    interval = paired_auc_difference(both, both, samples=samples, seed=seed)["preference_accuracy"]
    return RewardHead(
        weight=weight, bias=bias, mean=mean, scale=scale, examples=len(train), auc=auc, auc_interval=interval
    )
