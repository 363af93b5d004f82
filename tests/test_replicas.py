"""Three bot processes on one PostgreSQL database, in Slack's HTTP mode behind a load balancer.

Real `python -m bot run --adapter slack` processes sharing a real PostgreSQL server (started
by the tests), a model registry folder and the person secret; the fake Slack (the network
boundary) spreads its deliveries over them round-robin, as a load balancer would, and like
Slack retries a delivery that failed on the next process. Some acknowledged events are
delivered again to another process. One process is SIGKILLed in the middle of the burst
and started again. Then:

- every mention is stored and answered once, and posted once (those the killed process had
  taken are answered by its restart, which takes over the prompts left pending by a process
  no longer running; an answer Slack accepted in the instant before the kill is found in
  its thread and recorded, not posted again);
- every acknowledged vote is stored exactly once;
- the training schedule fires in all three, but one process leads: one run (here a recorded
  skip) per tick, not three;
- a version published to the registry is served by all three within the poll interval.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from storage.registry import ModelRegistry
from tests.fakes.slack import Delivery, FakeSlack, Message
from tests.helpers import publish_copy, wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

SECRET = "replica-signing-secret"
ROOT = Path(__file__).resolve().parents[1]
MENTIONS = 45  # people's questions; each is two events (app_mention and message)
REACTIONS_PER_ANSWER = 3
TICK_MINUTES = 0.05  # the training schedule: every 3 s
IN_FLIGHT = 6  # deliveries the fake Slack makes at once


class BalancedSlack(FakeSlack):
    """The fake Slack behind a round-robin load balancer; a failed delivery (the process
    died, a 5xx) is retried, as Slack retries, and lands on the next process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replicas: list[str | None] = []  # each process's events URL; None while it is down
        self._turn = itertools.count()
        self.failed_attempts = 0

    def target_url(self) -> str | None:
        live = [url for url in self.replicas if url is not None]
        return live[next(self._turn) % len(live)] if live else None

    async def redeliver(self, envelope: dict[str, Any], *, retry_num: int | None = None, **kwargs: Any) -> Delivery:
        attempt = retry_num or 0
        while True:
            try:
                delivery = await super().redeliver(envelope, retry_num=attempt or None, **kwargs)
                if delivery.status < 500:
                    return delivery
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            self.failed_attempts += 1
            attempt += 1
            if attempt > 5:  # Slack gives up after 3 retries; a little more room for the restart
                raise AssertionError(f"event {envelope['event_id']} was never acknowledged")
            await asyncio.sleep(0.2)


@dataclass
class Replica:
    name: str
    log: Path
    process: asyncio.subprocess.Process | None = None
    url: str | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _start(replica: Replica, env: dict[str, str]) -> None:
    port = _free_port()
    with replica.log.open("ab") as log_file:
        replica.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--adapter", "slack",
            env={**env, "THUMBTUNE_HTTP_PORT": str(port), "THUMBTUNE_DATA_DIR": str(replica.log.parent / replica.name)},
            stdout=log_file, stderr=log_file, cwd=ROOT,
        )  # fmt: skip
    process = replica.process
    await wait_for(lambda: "listening for events" in replica.text() or process.returncode is not None, timeout=180)
    assert process.returncode is None, replica.text()[-3000:]
    replica.url = f"http://127.0.0.1:{port}/slack/events"


async def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute(sql)
        return [tuple(row) for row in await cursor.fetchall()]


def _environment(postgres_url: str, tiny_model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """What every replica runs with: this environment without the developer's own settings,
    and one database, registry, model and person secret shared by all three."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("THUMBTUNE_", "SLACK_", "DISCORD_"))}
    env.update({
        "SLACK_BOT_TOKEN": "xoxb-replica-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "THUMBTUNE_DATABASE_URL": postgres_url,
        "THUMBTUNE_PERSON_SECRET": "one secret shared by every replica",
        "THUMBTUNE_MODEL": str(tiny_model_dir),
        "THUMBTUNE_REGISTRY_DIR": str(tmp_path / "registry"),
        "THUMBTUNE_ARTIFACTS": str(tmp_path / "artifacts"),
        "THUMBTUNE_HTTP_HOST": "127.0.0.1",
        "THUMBTUNE_DASHBOARD_PORT": "0",
        "THUMBTUNE_TORCH_THREADS": "1",
        "THUMBTUNE_MAX_NEW_TOKENS": "8",
        "THUMBTUNE_BATCH_WINDOW_MS": "20",
        "THUMBTUNE_PROMPTS_PER_MINUTE": "0",
        "THUMBTUNE_RECONCILE_HOURS": "0",
        "THUMBTUNE_REGISTRY_POLL_S": "1",
        "THUMBTUNE_TRAIN_EVERY_MINUTES": str(TICK_MINUTES),
        "THUMBTUNE_TRAIN_MIN_NEW_VOTES": "1000000",  # each tick records a skip: one row per tick
    })  # fmt: skip
    return env


async def _stop(replicas: list[Replica]) -> None:
    """SIGTERM to every process still running, then wait for each (killed after 30 s)."""
    for replica in replicas:
        if replica.process is not None and replica.process.returncode is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        if replica.process is not None:
            try:
                await asyncio.wait_for(replica.process.wait(), 30)
            except asyncio.TimeoutError:
                replica.process.kill()
                await replica.process.wait()


async def _ask_through_a_kill(
    fake: BalancedSlack, replicas: list[Replica], env: dict[str, str], *, restarted_log: Path
) -> list[Message]:
    """MENTIONS questions, a few at a time; the second process is SIGKILLed a third of the way
    through and started again (logging to ``restarted_log``) once the burst is over."""
    questions: list[Message] = []
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def ask(index: int) -> None:
        async with gate:
            questions.append(
                await fake.mention(channel=f"C{index % 3}", user=f"U{index % 15}", text=f"question {index}")
            )

    burst = [asyncio.create_task(ask(index)) for index in range(MENTIONS)]
    await wait_for(lambda: len(questions) >= MENTIONS // 3, timeout=60)
    victim = replicas[1]
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    fake.replicas[1] = None
    victim.log = restarted_log
    await asyncio.gather(*burst)
    await _start(victim, env)
    fake.replicas[1] = victim.url
    return questions


async def _vote(fake: BalancedSlack, answers: list[Message]) -> Counter[tuple[str, str]]:
    """REACTIONS_PER_ANSWER votes on each answer, a few at a time, some delivered again (as
    Slack retries) to another process; the acknowledged votes by message key and emoji."""
    acknowledged: Counter[tuple[str, str]] = Counter()
    gate = asyncio.Semaphore(IN_FLIGHT)
    reactions = []
    for q_index, answer in enumerate(answers):
        for voter in range(REACTIONS_PER_ANSWER):
            emoji = "+1" if (q_index + voter) % 3 else "-1"
            reactions.append((answer, f"V{voter}", emoji))

    async def react(answer: Message, user: str, emoji: str) -> None:
        async with gate:
            delivery = await fake.react(user=user, message=answer, name=emoji)
            assert delivery.status == 200
            acknowledged[(f"slack:{answer.channel}:{answer.ts}", "👍" if emoji == "+1" else "👎")] += 1
            if hash((answer.ts, user)) % 3 == 0:  # Slack's retry of a delivered event, elsewhere
                assert (await fake.redeliver(delivery.envelope, retry_num=1)).status == 200

    await asyncio.gather(*(react(*reaction) for reaction in reactions))
    await fake.settle()
    return acknowledged


async def test_three_replicas_share_one_database_through_retries_and_a_sigkill(
    postgres_url: str, tiny_model_dir: Path, tmp_path: Path
):
    registry_dir = tmp_path / "registry"
    env = _environment(postgres_url, tiny_model_dir, tmp_path)
    replicas = [Replica(f"replica{index}", tmp_path / f"replica{index}.log") for index in range(3)]
    async with BalancedSlack(signing_secret=SECRET).running() as fake:
        env["SLACK_API_URL"] = fake.api_url
        try:
            await asyncio.gather(*(_start(replica, env) for replica in replicas))
            fake.replicas = [replica.url for replica in replicas]
            started = time.time()

            # --- a burst of questions; one process is killed in the middle and started again
            questions = await _ask_through_a_kill(
                fake, replicas, env, restarted_log=tmp_path / "replica1-restarted.log"
            )

            def answered() -> bool:
                return all(fake.answers_in_thread(q.channel, q.ts) for q in questions)

            await wait_for(answered, timeout=120)
            await wait_for(lambda: _no_pending(postgres_url), timeout=60)
            answers = {q.ts: fake.answers_in_thread(q.channel, q.ts) for q in questions}
            # Each mention stored and answered once in the database...
            assert await _rows(postgres_url, "SELECT count(*) FROM prompts") == [(MENTIONS,)]
            # ...and posted once, even where the kill fell between Slack accepting the post and
            # the bot recording it: the restart reads the thread and records the answer it finds.
            assert {ts: len(found) for ts, found in answers.items() if len(found) != 1} == {}

            # --- votes, some delivered again to another process
            acknowledged = await _vote(fake, [answers[question.ts][0] for question in questions])
            stored = await _rows(
                postgres_url,
                "SELECT r.message_key, v.emoji, count(*) FROM votes v JOIN responses r ON r.id = v.response_id"
                " GROUP BY r.message_key, v.emoji",
            )
            assert {(key, emoji): count for key, emoji, count in stored} == dict(acknowledged)
            assert sum(acknowledged.values()) == MENTIONS * REACTIONS_PER_ANSWER

            # --- one process leads training: one recorded run per tick, not one per process
            await wait_for(lambda: _runs_at_least(postgres_url, 3), timeout=60)
            elapsed = time.time() - started
            runs = await _rows(postgres_url, "SELECT started_at FROM training_runs ORDER BY started_at")
            ticks = elapsed / (TICK_MINUTES * 60)
            assert len(runs) <= ticks + 2, (len(runs), ticks)  # three processes recording would be ~3 per tick

            # --- every replica follows CURRENT
            publish_copy(ModelRegistry(registry_dir), tiny_model_dir, parent=0)
            for replica in replicas:
                await wait_for(lambda r=replica: "now serving model version 1" in r.text(), timeout=60)
            for replica in replicas:
                assert "xoxb-replica-token" not in replica.text()
        finally:
            await _stop(replicas)


async def _runs_at_least(url: str, count: int) -> bool:
    return (await _rows(url, "SELECT count(*) FROM training_runs"))[0][0] >= count


async def _no_pending(url: str) -> bool:
    return await _rows(url, "SELECT count(*) FROM pending_prompts") == [(0,)]
