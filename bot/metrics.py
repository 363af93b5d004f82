"""The bot's numbers for Prometheus: one registry per running bot, scraped at ``/metrics`` (bot.web).

Counters move where things happen (bot.service for prompts, answers, refusals and votes;
the engine for batch sizes and, for vLLM, each request to a replica; bot.loop for training
runs); the queue depth, the serving version and the ready replicas are read when scraped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from bot.generation import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.prompts = Counter(
            "thumbtune_prompts", "Prompts taken (answered or refused), by platform", ["platform"], registry=registry
        )
        self.answers = Counter(
            "thumbtune_answers", "Answers generated and stored, by model version", ["version"], registry=registry
        )
        self.refusals = Counter(
            "thumbtune_refusals",
            "Prompts not answered: busy (the queue was full), slow_down (a person's rate limit), timeout",
            ["reason"],
            registry=registry,
        )
        self.comparisons = Counter(
            "thumbtune_comparisons",
            "Answers shown as comparisons, by why: asked (compare:), always (THUMBTUNE_COMPARE=on), "
            "unsure (auto: the reward model was least sure), random (auto: no reward model to ask)",
            ["why"],
            registry=registry,
        )
        self.votes = Counter("thumbtune_votes", "Reactions recorded as votes, by emoji", ["emoji"], registry=registry)
        self.generation_seconds = Histogram(
            "thumbtune_generation_seconds",
            "Time from asking the generator to its answer(s)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.batch_rows = Histogram(
            "thumbtune_batch_rows",
            "Rows (answers being written) per generation batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.training_runs = Counter(
            "thumbtune_training_runs", "Training runs by how they ended", ["status"], registry=registry
        )
        self.training_seconds = Histogram(
            "thumbtune_training_seconds",
            "Duration of training runs, from firing to the new version serving",
            buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
            registry=registry,
        )
        self.engine_seconds = Histogram(
            "thumbtune_engine_seconds",
            "Time of one request to a vLLM replica (THUMBTUNE_ENGINE=vllm), by replica",
            ["replica"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.engine_errors = Counter(
            "thumbtune_engine_errors",
            "Requests a vLLM replica failed, by replica and reason (unreachable, timeout, http_NNN)",
            ["replica", "reason"],
            registry=registry,
        )
        self.engine_replicas_ready = Gauge(
            "thumbtune_engine_replicas_ready",
            "Engine replicas up and holding the current version (1 for the local engine while it runs)",
            registry=registry,
        )
        self.queue_depth = Gauge("thumbtune_queue_depth", "Requests waiting for the generator", registry=registry)
        self.serving_version = Gauge("thumbtune_serving_version", "The model version answering now", registry=registry)

    def watch(self, generator: Engine) -> None:
        """Read the generator's queue and version when scraped; count its batches as they run."""
        self.queue_depth.set_function(generator.queued)
        self.serving_version.set_function(lambda: generator.version)
        generator.on_batch = self.batch_rows.observe
        self.engine_replicas_ready.set_function(
            lambda: sum(r.ready for r in generator.state().replicas) if generator.state().replicas else 1
        )
        if hasattr(generator, "on_call"):  # a remote engine tells each request to a replica
            generator.on_call = self._engine_call

    def _engine_call(self, replica: str, seconds: float, failure: str | None) -> None:
        self.engine_seconds.labels(replica).observe(seconds)
        if failure is not None:
            self.engine_errors.labels(replica, failure).inc()

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
