"""Any causal LM, not only GPT-2: a tiny Llama-architecture chat model built locally
(`make-tiny-model --arch llama`) answers in the shell chat through its chat template,
a training run completes through the gate, and the new version is served."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from transformers import AutoTokenizer

from bot.app import open_runtime
from bot.events import IncomingPrompt
from bot.settings import load_settings
from storage.dialogue import ModelDialogue, render_prompt
from tests.feedback_data import seed_preference


def _ask(text: str) -> IncomingPrompt:
    return IncomingPrompt(platform="shell", channel="local", user="me", text=text)


def test_the_tiny_chat_model_has_a_template_and_ends_its_turns(tiny_llama_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    dialogue = ModelDialogue(tokenizer)
    context = render_prompt("what is the weather like", [("hi", "Hello!")])
    assert dialogue.prompt(context) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nwhat is the weather like<|im_end|>\n<|im_start|>assistant\n"
    )
    assert dialogue.completion(context, " Sunny.") == "Sunny.<|im_end|>\n"  # the turn's end is learned too
    # Without a template (GPT-2): the stored dialogue is the prompt, as before.
    assert ModelDialogue(object()).prompt(context) == context


async def test_a_chat_model_answers_trains_through_the_gate_and_its_new_version_serves(
    settings_env, monkeypatch, tiny_llama_dir: Path
):
    monkeypatch.setenv("THUMBTUNE_MODEL", str(tiny_llama_dir))
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_NEW_VOTES", "10")
    monkeypatch.setenv("THUMBTUNE_TRAIN_EVERY_MINUTES", "0")  # fired by hand below
    settings = load_settings()
    async with open_runtime(settings) as runtime:
        reply = await runtime.service.on_prompt(_ask("what is the weather like"))
        assert reply.ok and reply.model_version == 0
        await seed_preference(runtime.repository, answers=40)
        outcome = await runtime.loop.scheduled_run()
        assert outcome.status == "published", outcome.reason
        assert outcome.serving == outcome.version == 1 == runtime.generator.version
        again = await runtime.service.on_prompt(_ask("how can I focus"))
        assert again.ok and again.model_version == 1
        version = runtime.loop.registry.get(1)
    assert "perplexity" in version.metrics and "perplexity_ratio_interval" in version.metrics  # the gate ran
    with sqlite3.connect(settings.db_path) as db:
        rows = db.execute(
            "SELECT p.text, p.context, r.text, r.model_version FROM responses r JOIN prompts p ON p.id = r.prompt_id"
            " WHERE r.id IN (?, ?) ORDER BY r.id",
            (reply.response_ids[0], again.response_ids[0]),
        ).fetchall()
    assert [row[3] for row in rows] == [0, 1]
    for question, context, answer, _ in rows:
        # Stored as the model-independent dialogue; the answer without the template's tokens.
        assert context == render_prompt(question)
        assert answer.strip() and "<|im" not in answer and "assistant" not in answer.split()[:1]
