"""/healthz and /metrics on the bot's own listener: real HTTP, Prometheus' own parser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


# --- who may look (issue 25: a dashboard lock that cannot be switched off by accident) ------
TOKEN = "a-long-dashboard-token"


async def request(
    method: str, url: str, *, local: str = "127.0.0.1", data: dict[str, str] | None = None, **headers: str
) -> aiohttp.ClientResponse:
    """One request from the address ``local`` (loopback is 127.0.0.0/8: a second client is 127.0.0.2)."""
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, url, headers=headers, data=data, allow_redirects=False) as response,
    ):
        await response.read()
        return response


@asynccontextmanager
async def listening(monkeypatch, *, token: str | None = None) -> AsyncIterator[Any]:
    """A running bot whose dashboard listens on a free port (with ``token``, if given)."""
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    if token is not None:
        monkeypatch.setenv("THUMBTUNE_DASHBOARD_TOKEN", token)
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        yield runtime


@pytest.mark.parametrize("token", ["", " ", "a", "fifteen-chars-x"])
def test_an_empty_or_short_dashboard_token_stops_start_up_without_echoing_it(settings_env, monkeypatch, token):
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_TOKEN", token)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("THUMBTUNE_DASHBOARD_TOKEN: ") and "16" in message and "\n" not in message
    assert len(token.strip()) < 3 or token not in message
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_TOKEN", f"  {TOKEN}  ")  # spaces around a good one are trimmed
    assert load_settings().dashboard_token.get_secret_value() == TOKEN


async def test_a_foreign_host_name_gets_421_on_every_path_dns_rebinding(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_ALLOWED_HOSTS", "Dash.Example.com")
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        url = runtime.web.url
        port = runtime.web.port
        for path in ("/", "/versions/0", "/healthz", "/metrics", "/login"):
            foreign = await request(
                "GET", url + path, Host=f"attacker.example:{port}", Origin="http://attacker.example"
            )
            assert foreign.status == 421, path
            assert foreign.headers["X-Content-Type-Options"] == "nosniff"
            for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "dash.example.com"):
                assert (await request("GET", url + path, Host=name)).status == 200, (path, name)


async def test_wrong_tokens_are_throttled_per_client_and_the_right_one_waits_too(settings_env, monkeypatch):
    async with listening(monkeypatch, token=TOKEN) as runtime:
        url = runtime.web.url
        statuses = [(await request("GET", url + "/metrics", Authorization=f"Bearer guess{i}")).status for i in range(8)]
        assert statuses == [401] * 5 + [429] * 3
        blocked = await request("GET", url + "/metrics", Authorization=f"Bearer {TOKEN}")
        assert blocked.status == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert (await request("POST", url + "/login", data={"token": TOKEN})).status == 429
        # Another client is not locked out by the guesser.
        other = await request("GET", url + "/metrics", local="127.0.0.2", Authorization=f"Bearer {TOKEN}")
        assert other.status == 200
        # Parallel wrong sign-ins from a fresh client: at most five are even compared.
        signs = await asyncio.gather(
            *(request("POST", url + "/login", local="127.0.0.3", data={"token": f"no{i}"}) for i in range(20))
        )
        assert sorted(r.status for r in signs) == [401] * 5 + [429] * 15


async def test_sessions_are_random_per_sign_in_scoped_to_the_folder_expire_and_sign_out(settings_env, monkeypatch):
    async with listening(monkeypatch, token=TOKEN) as runtime:
        url = runtime.web.url
        cookies = []
        for _ in range(2):
            signed = await request("POST", url + "/login", data={"token": TOKEN})
            assert signed.status == 303
            header = signed.headers["Set-Cookie"]
            assert "HttpOnly" in header and "SameSite=Strict" in header and "Max-Age=43200" in header
            assert "Path" not in header  # the browser scopes it to the folder the form was posted to
            cookies.append(signed.cookies["thumbtune_session"].value)
        assert cookies[0] != cookies[1] and TOKEN not in cookies[0]
        for cookie in cookies:
            page = await request("GET", url + "/", Cookie=f"thumbtune_session={cookie}")
            assert page.status == 200
        assert "action='./logout'" in await get_text(url + "/", Cookie=f"thumbtune_session={cookies[0]}")

        out = await request("POST", url + "/logout", Cookie=f"thumbtune_session={cookies[0]}")
        assert out.status == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
        assert (await request("GET", url + "/", Cookie=f"thumbtune_session={cookies[0]}")).status == 401
        assert (await request("GET", url + "/", Cookie=f"thumbtune_session={cookies[1]}")).status == 200

        runtime.web.sessions.lifetime_s = 0  # a session that has run its time
        late = (await request("POST", url + "/login", data={"token": TOKEN})).cookies["thumbtune_session"].value
        assert (await request("GET", url + "/", Cookie=f"thumbtune_session={late}")).status == 401


async def get_text(url: str, **headers: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return await response.text()


async def test_every_response_carries_the_security_headers(settings_env, monkeypatch):
    monkeypatch.setenv("THUMBTUNE_DASHBOARD_PORT", str(free_port()))
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        for path, status in (("/", 200), ("/metrics", 200), ("/healthz", 200), ("/versions/7", 404), ("/nope", 404)):
            response = await request("GET", runtime.web.url + path)
            assert response.status == status, path
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
            assert response.headers["Referrer-Policy"] == "no-referrer", path
        page = await get_text(runtime.web.url + "/versions/7")
        assert "no version 7" in page and str(runtime.settings.data_dir.resolve()) not in page
