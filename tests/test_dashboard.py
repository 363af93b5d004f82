"""The web dashboard: `thumbtune dashboard` on a database made by `thumbtune simulate`,
real HTTP, Prometheus' own parser, and headless Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.ray_head import free_port
from bot.app import open_database
from bot.settings import load_settings
from storage.registry import ModelRegistry
from storage.repository import Repository
from tests.feedback_data import add_signals
from trainer import snapshot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's closed network refuses Chromium's own calls
    "--disable-component-update",
    "--disable-sync",
]


def copied(simulated: tuple[Path, dict], tmp_path: Path) -> Path:
    """A private copy of the simulated data folder (the session's copy stays untouched)."""
    source, _ = simulated
    with sqlite3.connect(source / "simulate.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    target = tmp_path / "sim"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return target


def dashboard_env(data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBTUNE_")}
    env.update(
        THUMBTUNE_DATA_DIR=str(data),
        THUMBTUNE_DB=str(data / "simulate.db"),
        THUMBTUNE_REGISTRY_DIR=str(data / "models"),
        THUMBTUNE_MODEL="tiny-model-not-needed",
        THUMBTUNE_DASHBOARD_PORT=str(port),
        **extra,
    )
    return env


@contextmanager
def dashboard(data: Path, **extra: str) -> Iterator[str]:
    """`thumbtune dashboard` on ``data`` in its own process; yields its URL, stops it with SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "dashboard"],
        env=dashboard_env(data, port, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "dashboard at" in line, process.stderr.read() if process.stderr else line
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def get(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    async def fetch() -> tuple[int, str, dict[str, str]]:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)

    return asyncio.run(fetch())


def versions_of(data: Path) -> tuple[list[int], list[tuple[int, str, str | None]]]:
    with sqlite3.connect(data / "simulate.db") as db:
        served = [row[0] for row in db.execute("SELECT DISTINCT model_version FROM responses ORDER BY 1")]
        runs = db.execute("SELECT id, status, reason FROM training_runs ORDER BY id").fetchall()
    return served, runs


def test_the_pages_render_from_a_simulated_database(simulated, tmp_path: Path):
    data = copied(simulated, tmp_path)
    served, runs = versions_of(data)
    published = [v for v in served if v > 0]
    assert published, "the simulation published no version: nothing to show on a version page"
    with dashboard(data) as url:
        status, page, headers = get(url + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]  # nothing loads from elsewhere
        chart = re.search(r"<svg id=approval-chart.*?</svg>", page, re.S)
        assert chart is not None
        assert sorted(map(int, re.findall(r"data-version=(\d+)", chart.group(0)))) == served
        for run_id, run_status, reason in runs:
            assert re.search(rf"<tr><td>{run_id}</td><td>[^<]*</td><td class='{run_status}'>{run_status}</td>", page)
            if reason:
                assert reason.replace("'", "&#x27;").split(";")[0] in page
        assert "<table id=recent>" in page and "<svg id=days-chart" in page

        status, page, _ = get(f"{url}/versions/{published[-1]}")
        assert status == 200
        assert f"Version {published[-1]}" in page and "Passed the gate." in page
        rows = re.findall(r"<tr( class=changed)?><td>", page.split("<table id=answers>")[1])
        assert len(rows) >= 8  # the fixed prompts, side by side
        assert "perplexity on reference text" in page
        assert get(f"{url}/versions/999")[0] == 404
        assert get(f"{url}/versions/x")[0] == 404

        status, body, _ = get(url + "/healthz")
        assert status == 200 and '"serving_version": ' + str(served[-1]) in body and '"queue_depth": null' in body
        status, text, _ = get(url + "/metrics")
        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert families["thumbtune_serving_version"].samples[0].value == served[-1]


def test_texts_blanked_by_retention_or_forgotten_are_not_shown(simulated, tmp_path: Path):
    data = copied(simulated, tmp_path)
    with sqlite3.connect(data / "simulate.db") as db:
        prompt = db.execute(
            "SELECT p.text FROM votes v JOIN responses r ON r.id = v.response_id JOIN prompts p ON p.id = r.prompt_id"
            " ORDER BY v.id DESC LIMIT 1"
        ).fetchone()[0]
    published = [v for v in versions_of(data)[0] if v > 0]
    with dashboard(data) as url:
        assert prompt in get(url + "/")[1].replace("&#x27;", "'")
        before = get(f"{url}/versions/{published[-1]}")[1]

    def diff() -> dict:
        command = [sys.executable, "-m", "bot", "diff", str(published[-1]), "--json"]
        result = subprocess.run(command, env=dashboard_env(data, 0), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    quoted = [a["question"] for a in diff()["answers"] if a["source"] == "held_out"]
    quoted += [e["question"] for key in ("most_liked", "most_disliked") for e in diff()["data"][key]]
    assert quoted and "(text no longer kept)" not in quoted

    async def blank_everything() -> None:
        settings = load_settings(
            data_dir=data, db=data / "simulate.db", registry_dir=str(data / "models"), dashboard_port=0
        )
        async with open_database(settings) as database:
            assert await Repository(database).purge_texts_before(time.time() + 1) > 0

    asyncio.run(blank_everything())
    with dashboard(data) as url:
        page = get(url + "/")[1]
        assert prompt not in page.replace("&#x27;", "'")
        assert "No feedback yet." in page  # every vote's texts are gone
        after = get(f"{url}/versions/{published[-1]}")[1]
    # The reference prompts stay; people's prompts quoted in the report are hidden now.
    assert "(text no longer kept)" in after and "(text no longer kept)" not in before.split("Training data")[0]
    assert after.count("<tr") == before.count("<tr")
    # `thumbtune diff` hides them the same way, though its changes.json still quotes them.
    report = diff()
    shown = [a["question"] for a in report["answers"] if a["source"] == "held_out"]
    shown += [e["question"] for key in ("most_liked", "most_disliked") for e in report["data"][key]]
    assert set(shown) == {"(text no longer kept)"}


def implicit_rows(page: str) -> list[tuple[str, int, str, str]]:
    """The rows of a page's implicit-signals table: kind, answers with votes, agreed, weight."""
    table = page.split("<table id=implicit>")[1].split("</table>")[0]
    cells = r"<tr><td>([^<]*)</td><td class=n>(\d+)</td><td class=n>([^<]*)</td><td class=n>([^<]*)</td>"
    found = re.findall(cells, table)
    return [(kind, int(answers), agreed, weight) for kind, answers, agreed, weight in found]


def test_the_implicit_signals_agreement_is_shown_now_and_as_each_run_used_it(simulated, tmp_path: Path):
    data = copied(simulated, tmp_path)
    published = [v for v in versions_of(data)[0] if v > 0]
    registry = ModelRegistry(data / "models")
    record = registry.changes(published[-1])
    assert record is not None and record.data.implicit_weights  # the simulation's run kept its figures
    run = registry.get(published[-1]).config["run"]
    _, dataset = snapshot.read(snapshot.run_uri(str(data / "artifacts"), run))
    assert [weight.model_dump() for weight in record.data.implicit_weights] == [
        dataclasses.asdict(weight) for weight in dataset.implicit_weights
    ]

    async def more_signals() -> list[dict[str, object]]:
        settings = load_settings(data_dir=data, db=data / "simulate.db", dashboard_port=0)
        async with open_database(settings) as database:
            return await add_signals(Repository(database), {"rephrase": (3, 1), "reply_negative": (0, 2)}, person="p9")

    now = asyncio.run(more_signals())
    rephrase = next(figures for figures in now if figures["kind"] == "rephrase")
    assert rephrase["answers"] >= 4  # those added, and any the simulated people gave
    with dashboard(data) as url:
        index = get(url + "/")[1]
        page = get(f"{url}/versions/{published[-1]}")[1]

    def shown(figures: dict[str, object]) -> tuple[str, int, str, str]:
        answers, agreed, weight = figures["answers"], figures["agreed"], figures["weight"]
        assert isinstance(answers, int) and isinstance(agreed, int) and isinstance(weight, float)
        return (str(figures["kind"]), answers, f"{agreed / answers:.0%}" if answers else "-", f"{weight:.2f}")

    # The index: each kind's figures over the database now; the version page: its run's own.
    assert implicit_rows(index) == [shown(figures) for figures in now]
    assert implicit_rows(page) == [shown(weight.model_dump()) for weight in record.data.implicit_weights]
    assert implicit_rows(index) != implicit_rows(page)


def test_a_token_guards_every_page_and_a_browser_signs_in_with_a_cookie(simulated, tmp_path: Path):
    data = copied(simulated, tmp_path)
    with dashboard(data, THUMBTUNE_DASHBOARD_TOKEN="a-long-dashboard-token") as url:
        for path in ("/", "/versions/1", "/healthz", "/metrics"):
            assert get(url + path)[0] == 401
            assert get(url + path, Authorization="Bearer wrong")[0] == 401
            assert get(url + path, Cookie="thumbtune_session=guess")[0] == 401
            assert get(url + path, Authorization="Bearer a-long-dashboard-token")[0] in (200, 404)
        page = get(url + "/")[1]
        assert "name=token" in page  # a browser is shown the sign-in form

        async def sign_in(token: str) -> tuple[int, int]:
            # unsafe: aiohttp's jar otherwise ignores cookies from an IP address such as 127.0.0.1;
            # from 127.0.0.2: the wrong tokens above came from 127.0.0.1, which is now nearly throttled.
            jar = aiohttp.CookieJar(unsafe=True)
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as session:
                async with session.post(f"{url}/login", data={"token": token}, allow_redirects=False) as response:
                    signed = response.status
                async with session.get(url + "/") as response:
                    return signed, response.status

        assert asyncio.run(sign_in("wrong")) == (401, 401)
        assert asyncio.run(sign_in("a-long-dashboard-token")) == (303, 200)


def test_off_loopback_the_dashboard_refuses_to_start_without_a_token(simulated, tmp_path: Path):
    data = copied(simulated, tmp_path)
    env = dashboard_env(data, free_port())
    result = subprocess.run(
        [sys.executable, "-m", "bot", "dashboard", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "THUMBTUNE_DASHBOARD_TOKEN" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: .ci/run installs it")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return CHROMIUM


def test_a_real_browser_sees_the_chart_and_follows_a_version_link(simulated, tmp_path: Path, chromium: str):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("THUMBTUNE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    data = copied(simulated, tmp_path)
    served, _ = versions_of(data)
    published = [v for v in served if v > 0]
    with (
        dashboard(data, THUMBTUNE_DASHBOARD_TOKEN="a-long-dashboard-token") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/")
            page.fill("input[name=token]", "a-long-dashboard-token")  # the sign-in form, then the cookie
            page.click("input[type=submit]")
            page.wait_for_selector("#approval-chart")
            points = page.locator("#approval-chart g.point")
            assert points.count() == len(served)
            assert page.locator("#approval-chart circle").first.is_visible()
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            page.click(f"#versions a[href='versions/{published[-1]}']")
            page.wait_for_url(f"**/versions/{published[-1]}")
            assert page.locator("h2").first.inner_text() == f"Version {published[-1]}"
            assert page.locator("#answers tr").count() >= 9
            page.screenshot(path=str(shots / "what-changed.png"), full_page=True)

            page.click("header a")  # back home through the relative link
            page.wait_for_selector("#approval-chart")
        finally:
            browser.close()
    assert (shots / "dashboard.png").stat().st_size > 10_000
    assert (shots / "what-changed.png").stat().st_size > 10_000
