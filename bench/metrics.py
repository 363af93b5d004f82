"""`python -m bench.metrics`: how long a Prometheus scrape of ``/metrics`` takes.

A bot on the tiny model with its listener on a free loopback port; the counters hold
what a busy bot's would (3 platforms, 10 versions, 6 emoji, every refusal reason and
training status, full histograms); 200 scrapes over real HTTP, timed from request to
the last byte. Prints one JSON object: median, p95, max in milliseconds, and the page size.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import percentile
from bench.ray_head import free_port
from bot.app import open_runtime
from bot.cli import quiet_libraries
from bot.settings import load_settings
from bot.tinymodel import make_tiny_model


async def main_async(model: Path, data: Path) -> dict[str, object]:
    os.environ.update(
        {
            "THUMBTUNE_MODEL": str(model),
            "THUMBTUNE_DATA_DIR": str(data),
            "THUMBTUNE_DASHBOARD_PORT": str(free_port()),
            "THUMBTUNE_TRAIN_EVERY_MINUTES": "0",
            "THUMBTUNE_LOG_LEVEL": "WARNING",
        }
    )
    async with open_runtime(load_settings()) as runtime:
        assert runtime.web is not None
        metrics = runtime.service.metrics
        for platform in ("slack", "discord", "shell"):
            metrics.prompts.labels(platform).inc(1000)
        for version in range(10):
            metrics.answers.labels(str(version)).inc(1000)
        for emoji in ("👍", "👎", "😂", "❤️", "🎉", "🚩"):
            metrics.votes.labels(emoji).inc(100)
        for reason in ("busy", "slow_down", "timeout", "failed"):
            metrics.refusals.labels(reason).inc()
        for status in ("published", "rejected", "skipped", "failed"):
            metrics.training_runs.labels(status).inc()
        for value in range(1000):
            metrics.generation_seconds.observe(value / 100)
            metrics.batch_rows.observe(value % 40)
            metrics.training_seconds.observe(value)
        url = f"{runtime.web.url}/metrics"
        seconds: list[float] = []
        size = 0
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                started = time.perf_counter()
                async with session.get(url) as response:
                    size = len(await response.read())
                seconds.append(time.perf_counter() - started)
    return {
        "scrapes": len(seconds),
        "median_ms": round(statistics.median(seconds) * 1e3, 2),
        "p95_ms": round(percentile(seconds, 95) * 1e3, 2),
        "max_ms": round(max(seconds) * 1e3, 2),
        "page_bytes": size,
        "target_ms": 20,
    }


def main() -> int:
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="thumbtune-bench-metrics-") as tmp:
        model = make_tiny_model(Path(tmp) / "tiny")
        print(json.dumps(asyncio.run(main_async(model, Path(tmp) / "data"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
