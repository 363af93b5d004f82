"""Decoding: sampling settings, the sampler, and the loop that continues a batch of prompts.

``decode`` is ``generate``'s loop without what the bot does not use; ``sample`` tokenizes
a batch of rendered prompts, decodes it with the bot's sampler and cuts each answer at
the next turn. GPT-2 models run through ``bot.generation.gpt2.Gpt2Forward``, every other
model through its own transformers forward (``TransformersForward``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import cast

import torch
from transformers import DynamicCache, PreTrainedModel

from bot.generation.gpt2 import Gpt2Forward, supports
from bot.generation.loading import LoadedModel
from storage.reward import answer_features


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 48
    candidates: int = 1
    rank: bool = False  # best-of-n: the version's reward model puts its favourite candidate first

    def batch_key(self) -> tuple[float, float, int]:
        # Candidates are just more rows; the rest must be equal to share one batch.
        return (self.temperature, self.top_p, self.max_new_tokens)


def sample_top_k_top_p(logits: torch.Tensor, temperature: float, top_p: float, top_k: int = 50) -> torch.Tensor:
    """One token id per row: temperature, then top-k, then nucleus (top-p) sampling.

    The distribution of ``generate(do_sample=True)`` with GPT-2's defaults (top_k=50), but
    computed over the k best tokens only: ``generate`` sorts and samples over the whole
    50,257-token vocabulary for every row and step, about 18 % of a batch of 32 on one
    CPU thread (torch profiler).
    """
    values, indices = torch.topk(logits.float() / temperature, min(top_k, logits.shape[-1]))
    probs = torch.softmax(values, dim=-1)  # sorted, highest first
    # Keep the smallest prefix whose probability reaches top_p (always the first token).
    outside = probs.cumsum(dim=-1) - probs >= top_p
    probs = probs.masked_fill(outside, 0.0)
    return indices.gather(-1, torch.multinomial(probs, 1)).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each token's position in its own row of a left-padded batch (padding counts as 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class TransformersForward:
    """``Gpt2Forward``'s interface over any causal LM's own forward and a ``DynamicCache``."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.cache = DynamicCache()
        # transformers 5.24 renamed forward's ``past_key_values`` to ``cache``; an unknown
        # keyword would be swallowed by ``**kwargs`` and every step recomputed without it.
        parameters = inspect.signature(model.forward).parameters
        self._cache_keyword = "cache" if "cache" in parameters else "past_key_values"

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits: torch.Tensor = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_keyword: self.cache},
        ).logits[:, -1]
        return logits

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)


@torch.inference_mode()
def decode(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    stop_ids: Collection[int],
    done: Callable[[int, list[int]], bool] | None = None,
) -> list[list[int]]:
    """Continue each row of a left-padded batch by up to ``max_new_tokens`` tokens.

    ``choose`` maps the last logits [rows, vocab] to one id per row. A row ends with one of
    ``stop_ids`` (end of text, end of turn: kept) or when ``done(row, its new ids)`` says its answer is complete,
    and leaves the batch (its cached keys and values too); decoding stops when every row
    has ended. Returns each row's new ids, in the order of the input rows.

    This is ``generate``'s loop without what the bot does not use (logits processors,
    stopping-criteria objects, beam bookkeeping), and no tokens after an answer is over.
    GPT-2 models run through ``bot.generation.gpt2.Gpt2Forward``, others through their own forward.
    """
    rows = input_ids.shape[0]
    # One unpadded row needs no mask (the plain causal path).
    mask = None if rows == 1 and bool(attention_mask.all()) else attention_mask
    positions = position_ids(attention_mask)
    forward: Gpt2Forward | TransformersForward
    if supports(model):
        forward = Gpt2Forward(model, capacity=input_ids.shape[1] + max_new_tokens)
    else:
        forward = TransformersForward(model)
    logits = forward(input_ids, positions, mask)
    position = positions[:, -1:]
    new: list[list[int]] = [[] for _ in range(rows)]
    live = list(range(rows))  # the original row of each row still in the batch
    for step in range(max_new_tokens):
        picked = choose(logits)
        going = []  # indexes (in the batch) of the rows whose answers go on
        for index, token in enumerate(picked.tolist()):
            row = live[index]
            new[row].append(token)
            if token not in stop_ids and not (done is not None and done(row, new[row])):
                going.append(index)
        if not going or step == max_new_tokens - 1:
            break
        if len(going) < len(live):
            # Finished rows leave the batch: later steps compute only the answers still going.
            keep = torch.tensor(going, device=picked.device)
            forward.keep(keep)
            picked, position = picked[keep], position[keep]
            mask = None if mask is None else mask[keep]
            live = [live[i] for i in going]
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=-1)
        position = position + 1
        logits = forward(picked.unsqueeze(-1), position, mask)
    return new


@dataclass(frozen=True)
class Sampled:
    """One prompt's candidates: best first when the version's reward model ranked them."""

    texts: list[str]
    new_tokens: int
    prompt_tokens: int
    scores: list[float] | None = None  # the reward model's, in the order of ``texts``


def sample(
    loaded: LoadedModel,
    prompts: Sequence[str],
    params: SamplingParams,
    rows_per_prompt: Sequence[int],
    rank: Sequence[bool] | None = None,
) -> list[Sampled]:
    """One batched decode over ``prompts`` (stored dialogues; prompt i repeated
    rows_per_prompt[i] times), shown to the model as it expects them (storage.dialogue.ModelDialogue).

    Where ``rank[i]`` asks for it, prompt i has several candidates and the version has a
    reward model, they are scored in one more forward pass and put best first (best-of-n;
    a comparison's sides are never ranked). Runs on the worker thread.
    """
    tokenizer, dialogue = loaded.tokenizer, loaded.dialogue
    shown = [dialogue.prompt(text) for text in prompts]
    rows = [text for text, count in zip(shown, rows_per_prompt, strict=True) for _ in range(count)]
    limit = max(1, loaded.max_positions - params.max_new_tokens)
    encoded = tokenizer(
        rows,
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=limit,
        add_special_tokens=dialogue.add_special_tokens,
    )
    encoded = {name: tensor.to(loaded.device) for name, tensor in encoded.items()}
    done = None
    if not dialogue.chat:  # stop a row once its answer is over: the tokens after it would be cut anyway
        done = lambda _row, ids: dialogue.is_over(cast(str, tokenizer.decode(ids, skip_special_tokens=True)))  # noqa: E731
    new = decode(
        loaded.model,
        encoded["input_ids"],
        encoded["attention_mask"],
        max_new_tokens=params.max_new_tokens,
        choose=lambda logits: sample_top_k_top_p(logits, params.temperature, params.top_p),
        stop_ids=loaded.stop_ids,
        done=done,
    )
    prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
    results: list[Sampled] = []
    row = 0
    for count in rows_per_prompt:
        chosen = new[row : row + count]
        texts = [dialogue.answer(text) for text in tokenizer.batch_decode(chosen, skip_special_tokens=True)]
        results.append(Sampled(texts, sum(len(ids) for ids in chosen), int(prompt_lengths[row])))
        row += count
    if loaded.reward is not None and rank is not None and any(rank):
        results = _ranked(loaded, prompts, results, rank)
    return results


def _ranked(loaded: LoadedModel, prompts: Sequence[str], results: list[Sampled], rank: Sequence[bool]) -> list[Sampled]:
    """The candidates of each prompt asked for, scored by the reward model and sorted best first."""
    assert loaded.reward is not None
    wanted = [asked and len(result.texts) > 1 for asked, result in zip(rank, results, strict=True)]
    items = [
        (prompt, text)
        for prompt, result, ranked in zip(prompts, results, wanted, strict=True)
        if ranked
        for text in result.texts
    ]
    if not items:
        return results
    scores = iter(loaded.reward.score(answer_features(loaded.model, loaded.tokenizer, items)).tolist())
    ranked = []
    for result, asked in zip(results, wanted, strict=True):
        if not asked:
            ranked.append(result)
            continue
        scored = sorted(zip([next(scores) for _ in result.texts], result.texts, strict=True), key=lambda pair: -pair[0])
        ranked.append(replace(result, texts=[text for _, text in scored], scores=[round(s, 4) for s, _ in scored]))
    return ranked
