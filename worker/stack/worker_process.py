"""Runs `python -m worker run` as a child process (demo, tests, load runs) and waits until
it consumes, by reading its own Prometheus endpoint."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

import orjson
from pydantic import SecretStr

from worker.settings import Settings
from worker.stack.process import ManagedProcess, free_port


class WorkerProcessError(RuntimeError):
    """The worker process exited early or never became ready."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces `settings` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = orjson.dumps(value).decode() if isinstance(value, dict) else str(value)
    return env


def scrape_metrics(port: int, timeout_s: float = 1.0) -> dict[str, float]:
    """Prometheus text format -> {"name{labels}": value}; {} while the endpoint is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
            text = r.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, raw = line.rpartition(" ")
            try:
                values[name] = float(raw)
            except ValueError:
                continue
    return values


def stage_means_ms(metrics: dict[str, float], pipeline: str, topic: str) -> dict[str, float]:
    """From `scrape_metrics` output: mean milliseconds per micro-batch in each stage of
    `pipeline` ("events", "items"), "batch_size": mean messages per batch of `topic`, and
    "gc": the process's garbage-collector time (its whole life) per batch of `pipeline`."""

    def mean(sum_key: str) -> float | None:
        count = metrics.get(sum_key.replace("_sum{", "_count{", 1))
        return metrics[sum_key] / count if count else None

    means: dict[str, float] = {}
    prefix = f'streamrec_stage_seconds_sum{{pipeline="{pipeline}",stage="'
    for key in metrics:
        if key.startswith(prefix) and (value := mean(key)) is not None:
            means[key[len(prefix) : -2]] = round(1000.0 * value, 3)
    size_key = f'streamrec_batch_size_sum{{topic="{topic}"}}'
    if size_key in metrics and (value := mean(size_key)) is not None:
        means["batch_size"] = round(value, 2)
    batches = metrics.get(f'streamrec_batch_size_count{{topic="{topic}"}}')
    gc_s = sum(v for k, v in metrics.items() if k.startswith("streamrec_gc_seconds_total{"))
    if batches:
        means["gc"] = round(1000.0 * gc_s / batches, 3)
    return means


class WorkerProcess(ManagedProcess):
    name = "worker"
    error = WorkerProcessError

    def __init__(self, settings: Settings, log_path: Path, *, ready_timeout_s: float = 120.0):
        if not settings.kafka_bootstrap_servers or not settings.triton_url:
            raise ValueError("WorkerProcess needs resolved broker and Triton addresses")
        super().__init__(log_path)
        self.metrics_port = settings.metrics_port or free_port()
        self.settings = settings.model_copy(update={"metrics_port": self.metrics_port})
        self.ready_timeout_s = ready_timeout_s

    def start(self) -> WorkerProcess:
        self._spawn(
            [sys.executable, "-m", "worker", "run"],
            env={**os.environ, **settings_env(self.settings)},
        )
        self._wait_until(
            lambda: self.metric("streamrec_ready") == 1.0,
            timeout_s=self.ready_timeout_s,
            interval_s=0.1,
        )
        return self

    def metric(self, name: str) -> float | None:
        return scrape_metrics(self.metrics_port).get(name)

    def stage_means_ms(self, pipeline: str) -> dict[str, float]:
        """Mean stage times so far of the "events" or "items" pipeline (see `stage_means_ms`)."""
        topic = {"events": self.settings.events_topic, "items": self.settings.items_topic}
        return stage_means_ms(scrape_metrics(self.metrics_port), pipeline, topic[pipeline])
