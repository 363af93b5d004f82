"""Privacy by default (issue 25): `forget me` reaches every copy the bot made, registry
files are input (validated and escaped), and texts leave the database for a page scrubbed.
Real trainer, real SQLite file, real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.ray_head import free_port
from bot.app import open_runtime
from bot.events import IncomingPrompt, IncomingReaction, message_key
from bot.settings import load_settings
from storage.registry import ModelRegistry
from tests.feedback_data import seed_preference
from tests.helpers import publish_copy
from trainer import snapshot

EMAIL = "alice.canary@example.com"
QUESTION = f"my address is {EMAIL}, can you remember my favourite apple pie"


def _holding(text: str, *folders: Path) -> list[str]:
    """The JSON files under ``folders`` that hold ``text``."""
    return sorted(
        str(path)
        for folder in folders
        for path in folder.rglob("*.json")
        if path.is_file() and text in path.read_text(encoding="utf-8", errors="replace")
    )


async def _ask_and_like(runtime, *, user: str, text: str, voters: int) -> str:
    """``user`` asks on Slack; the answer is posted and liked by ``voters`` people."""
    service = runtime.service
    reply = await service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user=user, text=text))
    assert reply is not None and reply.ok
    key = message_key("slack", "C1", f"{reply.response_ids[0]}.0")
    await service.answer_posted(reply.response_ids[0], key)
    for voter in range(voters):
        reaction = IncomingReaction(platform="slack", message_key=key, user=f"V{voter}", emoji="+1")
        await service.on_reaction(reaction)
    return reply.text


async def test_forget_me_takes_their_texts_out_of_run_snapshots_and_version_reports(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_EXAMPLES", "8")
    monkeypatch.setenv("THUMBTUNE_REDACT", "off")  # the raw texts reach the files: forget must find them
    async with open_runtime(load_settings()) as runtime:
        await seed_preference(runtime.repository, answers=30)
        await _ask_and_like(runtime, user="UALICE", text=QUESTION, voters=6)
        outcome = await runtime.loop.run_training()
        assert outcome.status in ("published", "rejected"), outcome.reason
        artifacts, models = Path(runtime.settings.artifacts_uri), Path(runtime.settings.registry_uri)
        assert _holding(EMAIL, artifacts, models)  # the snapshot (and the report, where it quotes her)
        _, dataset = snapshot.read(snapshot.run_uri(runtime.settings.artifacts_uri, outcome.run or 0))
        examples = len(dataset.train) + len(dataset.held_out)

        reply = await runtime.service.on_prompt(
            IncomingPrompt(platform="slack", channel="C1", user="UALICE", text="forget me")
        )
        assert reply is not None and "training file" in reply.text

        # Her prompt went with the answer to it (that sentence may be said to others: theirs stay).
        assert _holding(EMAIL, artifacts, models) == [] and _holding(QUESTION, artifacts, models) == []
        _, dataset = snapshot.read(snapshot.run_uri(runtime.settings.artifacts_uri, outcome.run or 0))
        assert len(dataset.train) + len(dataset.held_out) == examples - 1  # only her example went
        for path in models.rglob("changes.json"):
            json.loads(path.read_text())  # still a valid report


async def test_forget_me_finds_their_texts_in_scrubbed_snapshots_too(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_TRAIN_MIN_EXAMPLES", "8")
    async with open_runtime(load_settings()) as runtime:
        await seed_preference(runtime.repository, answers=30)
        await _ask_and_like(runtime, user="UALICE", text=QUESTION, voters=6)
        uri = snapshot.run_uri(runtime.settings.artifacts_uri, 1)
        outcome = await runtime.loop.run_training()
        assert outcome.status in ("published", "rejected"), outcome.reason
        text = Path(uri, snapshot.DATASET).read_text()
        assert EMAIL not in text and "my address is <EMAIL>" in text  # scrubbed on the way out
        await runtime.service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user="UALICE", text="forget me"))
        assert "my address is <EMAIL>" not in Path(uri, snapshot.DATASET).read_text()


# --- registry files are input ------------------------------------------------------------
MARKUP = "<img src=x onerror=alert(1)><script>alert(2)</script>"


async def _page(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


@asynccontextmanager
async def served(monkeypatch, model_dir: Path) -> AsyncIterator[tuple[Any, ModelRegistry, int]]:
    """A bot with its dashboard listening, serving a published version 1."""
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    registry = ModelRegistry(load_settings().registry_uri)
    version = publish_copy(registry, model_dir, metrics={"perplexity": 9.0})
    async with open_runtime(load_settings(), loop=False) as runtime:
        assert runtime.web is not None
        yield runtime, registry, version


async def test_markup_in_a_versions_files_is_escaped_or_refused(settings_env, monkeypatch, tiny_model_dir):
    async with served(monkeypatch, tiny_model_dir) as (runtime, registry, version):
        await _markup_is_escaped_or_refused(runtime, registry, version)


async def _markup_is_escaped_or_refused(runtime, registry: ModelRegistry, version: int) -> None:
    folder = registry.get(version).path
    changes = {
        "answers": [{"question": MARKUP, "before": MARKUP, "after": "fine", "source": "reference"}],
        "changed_share": 1.0,
        "words": {"rose": [{"token": MARKUP, "change": 0.5}], "fell": []},
        "data": {
            "counts": {"train_examples": 3},
            "most_liked": [],
            "most_disliked": [],
            "implicit_weights": [{"kind": MARKUP, "answers": 3, "agreed": 2, "weight": 0.31, "used": True}],
        },
        "gate": {"passed": True, "reasons": [MARKUP], "metrics": {"perplexity": 9.0, "not_enough_data": [MARKUP]}},
    }
    (folder / "changes.json").write_text(json.dumps(changes))
    status, page = await _page(f"{runtime.web.url}/versions/{version}")
    assert status == 200 and "<img" not in page and "<script>" not in page and "&lt;img" in page
    assert "<td>&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in page.split("<table id=implicit>")[1]

    # Wrong types (markup where a count belongs) are refused as damaged, not shown half-read.
    changes["data"]["counts"] = {"train_examples": "<b>many</b>"}
    (folder / "changes.json").write_text(json.dumps(changes))
    status, page = await _page(f"{runtime.web.url}/versions/{version}")
    assert status == 200 and "damaged" in page and "<b>many" not in page

    # A version.json whose status or parent is markup: the version is not listed or served.
    meta = json.loads((folder / "version.json").read_text())
    (folder / "version.json").write_text(json.dumps({**meta, "status": "published onmouseover=alert(1)"}))
    assert [info.version for info in registry.versions()] == []
    status, page = await _page(f"{runtime.web.url}/versions/{version}")
    assert status == 404 and "onmouseover" not in page and str(folder) not in page
    status, index = await _page(f"{runtime.web.url}/")
    assert status == 200 and "onmouseover" not in index


async def test_pages_show_texts_scrubbed_and_quotes_of_scrubbed_prompts_while_kept(
    settings_env, monkeypatch, tiny_model_dir
):
    async with served(monkeypatch, tiny_model_dir) as (runtime, registry, version):
        await _scrubbed_pages(runtime, registry, version)


async def _scrubbed_pages(runtime, registry: ModelRegistry, version: int) -> None:
    await _ask_and_like(runtime, user="U1", text=QUESTION, voters=1)
    status, index = await _page(f"{runtime.web.url}/")
    assert status == 200 and EMAIL not in index and "my address is &lt;EMAIL&gt;" in index

    # A report written by a trainer quotes the prompt scrubbed; it is shown while the database keeps it.
    quoted = "my address is <EMAIL>, can you remember my favourite apple pie"
    changes = {
        "answers": [{"question": quoted, "before": f"write to {EMAIL}", "after": "ok", "source": "held_out"}],
        "changed_share": 1.0,
        "data": {"counts": {}, "most_liked": [{"question": quoted, "answer": "ok", "reward": 1.0}]},
    }
    (registry.get(version).path / "changes.json").write_text(json.dumps(changes))
    status, page = await _page(f"{runtime.web.url}/versions/{version}")
    assert status == 200 and "(text no longer kept)" not in page
    assert page.count("my address is &lt;EMAIL&gt;") == 2 and EMAIL not in page  # an old report's answer too
