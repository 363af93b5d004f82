"""bot.generation.gpt2.Gpt2Forward against transformers' own GPT-2 forward, and decode's other path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from bot.generation import TransformersForward, decode, load_model, position_ids
from bot.generation.gpt2 import Gpt2Forward, supports
from storage.dialogue import render_prompt

PROMPTS = [
    render_prompt("hi"),
    render_prompt("what should I eat tonight, something warm please"),
    render_prompt("do you like cats"),
]


def steps(forward: Gpt2Forward | TransformersForward, batch, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
    """Last-position logits of the prompt and then of each new column of tokens."""
    mask = batch["attention_mask"]
    position = position_ids(mask)
    out = [forward(batch["input_ids"], position, mask)]
    position = position[:, -1:]
    for column in tokens:
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        position = position + 1
        out.append(forward(column, position, mask))
    return out


@pytest.mark.parametrize("served", [True, False], ids=["served", "as-loaded"])
@pytest.mark.parametrize("capacity", [64, 1], ids=["reserved", "grown"])
def test_logits_equal_transformers_on_a_left_padded_batch(tiny_model_dir: Path, served: bool, capacity: int):
    # served: the model as load_model gives it (weights laid out for the CPU kernel, which
    # Gpt2Forward then takes); as-loaded: from_pretrained's layout, which is what a GPU
    # serves (every product through F.linear).
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    loaded = load_model(tiny_model_dir, version=0, device="cpu")
    model, tokenizer = (loaded.model if served else plain), loaded.tokenizer
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    assert not bool(batch["attention_mask"].all())  # really padded
    torch.manual_seed(0)
    tokens = [torch.randint(0, plain.config.vocab_size, (len(PROMPTS), 1)) for _ in range(6)]
    with torch.inference_mode():
        want = steps(TransformersForward(plain), batch, tokens)  # transformers' own GPT-2 forward
        got = steps(Gpt2Forward(model, capacity=capacity), batch, tokens)
    assert len(got) == len(want) == 7
    for ours, theirs in zip(got, want, strict=True):
        assert not ours.isnan().any()
        assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_an_unpadded_row_needs_no_mask_and_gets_the_same_logits(tiny_model_dir: Path):
    loaded = load_model(tiny_model_dir, version=0, device="cpu")
    batch = loaded.tokenizer(PROMPTS[1], return_tensors="pt")
    tokens = [torch.tensor([[7]]), torch.tensor([[11]])]
    with torch.inference_mode():
        masked = steps(Gpt2Forward(loaded.model, capacity=32), batch, tokens)
        forward, position = Gpt2Forward(loaded.model, capacity=32), position_ids(batch["attention_mask"])
        unmasked = [forward(batch["input_ids"], position, None)]
        for column in tokens:
            position = position[:, -1:] + 1
            unmasked.append(forward(column, position, None))
    for a, b in zip(masked, unmasked, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_rows_kept_go_on_as_if_they_had_been_alone(tiny_model_dir: Path):
    loaded = load_model(tiny_model_dir, version=0, device="cpu")
    batch = loaded.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        forward = Gpt2Forward(loaded.model, capacity=40)
        mask = batch["attention_mask"]
        first = forward(batch["input_ids"], position_ids(mask), mask)
        forward.keep(torch.tensor([2, 0]))
        picked = first.argmax(-1)[[2, 0]].unsqueeze(-1)
        mask = torch.cat([mask[[2, 0]], mask.new_ones(2, 1)], dim=-1)
        after = forward(picked, position_ids(mask)[:, -1:], mask)
        for index, row in enumerate([2, 0]):
            alone = loaded.tokenizer(PROMPTS[row], return_tensors="pt")
            single = Gpt2Forward(loaded.model, capacity=40)
            start = single(alone["input_ids"], position_ids(alone["attention_mask"]), None)
            assert torch.equal(start.argmax(-1), picked[index])
            position = torch.tensor([[alone["input_ids"].shape[1]]])
            assert torch.allclose(
                single(picked[index : index + 1], position, None), after[index : index + 1], atol=1e-5
            )


def test_only_gpt2_language_models_without_cross_attention_are_supported():
    small = {"vocab_size": 50, "n_positions": 32, "n_embd": 16, "n_layer": 1, "n_head": 2}
    assert supports(GPT2LMHeadModel(GPT2Config(**small)))
    assert not supports(GPT2LMHeadModel(GPT2Config(add_cross_attention=True, **small)))
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=32,
        )
    )
    assert not supports(llama)
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        Gpt2Forward(llama, capacity=8)


def test_other_models_decode_through_their_own_forward(tiny_model_dir: Path):
    # A model bot.generation.gpt2 does not cover still decodes, padded batch and all, as generate does.
    tokenizer = load_model(tiny_model_dir, version=0, device="cpu").tokenizer
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=128,
        )
    ).eval()
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    got = decode(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=6,
        choose=lambda logits: logits.argmax(dim=-1),
        stop_ids=(),
    )
    for prompt, ids in zip(PROMPTS, got, strict=True):
        alone = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            want = model.generate(
                **alone, do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=tokenizer.eos_token_id
            )
        assert ids == want[0, alone["input_ids"].shape[1] :].tolist()
