"""/healthz and /metrics on the bot's own listener: real HTTP, Prometheus' own parser."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.ray_head import free_port
from bot.app import open_runtime
from bot.events import IncomingPrompt, IncomingReaction, message_key
from bot.settings import SettingsError, load_settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, labels) -> value, as Prometheus itself parses the page."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def get(url: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


async def test_metrics_parse_and_move_when_a_prompt_is_answered_and_a_vote_arrives(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        status, before = await get(f"{runtime.web.url}/metrics")
        assert status == 200
        first = samples(before)
        assert first[("thumbtune_serving_version", ())] == 0 and first[("thumbtune_queue_depth", ())] == 0

        reply = await runtime.service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user="U1", text="hi"))
        assert reply is not None and reply.ok
        key = message_key("slack", "C1", "1.0")
        await runtime.service.answer_posted(reply.response_ids[0], key)
        await runtime.service.on_reaction(IncomingReaction(platform="slack", message_key=key, user="U2", emoji="+1"))

        after = samples((await get(f"{runtime.web.url}/metrics"))[1])
        assert after[("thumbtune_prompts_total", (("platform", "slack"),))] == 1
        assert after[("thumbtune_answers_total", (("version", "0"),))] == 1
        assert after[("thumbtune_votes_total", (("emoji", "👍"),))] == 1  # +1 counted under its canonical emoji
        assert after[("thumbtune_generation_seconds_count", ())] == 1
        assert after[("thumbtune_batch_rows_count", ())] >= 1


async def test_healthz_says_what_serves_and_turns_503_when_the_database_fails(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        status, body = await get(f"{runtime.web.url}/healthz")
        assert status == 200 and body["status"] == "ok"
        assert (body["serving_version"], body["queue_depth"], body["database_ok"]) == (0, 0, True)
        assert body["last_training_run"] is None and body["adapter_connected"] is None

        await runtime.database.close()  # the database is gone
        status, body = await get(f"{runtime.web.url}/healthz")
        assert status == 503 and body["database_ok"] is False and body["status"] == "unhealthy"


async def test_the_token_is_enforced_and_off_loopback_a_token_is_required(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_HOST", "0.0.0.0")
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    with pytest.raises(SettingsError, match="THUMBTUNE_DASHBOARD_TOKEN: needed"):
        load_settings()
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_TOKEN", "a-long-dashboard-token")
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        url = f"http://127.0.0.1:{runtime.web.port}"
        for path in ("/healthz", "/metrics"):
            assert (await get(url + path))[0] == 401
            assert (await get(url + path, Authorization="Bearer wrong"))[0] == 401
            assert (await get(url + path, Authorization="Bearer a-long-dashboard-token"))[0] == 200


async def test_a_port_in_use_stops_start_up_with_one_line(settings_env, monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(taken.getsockname()[1]))
        with pytest.raises(SettingsError, match=r"THUMBTUNE_DASHBOARD_PORT: cannot listen on 127\.0\.0\.1"):
            async with open_runtime(load_settings()):
                pass
