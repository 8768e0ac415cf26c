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
