"""Runs `python -m worker run` as a child process (demo, tests, load runs) and waits until
it consumes, by reading its own Prometheus endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import orjson
from pydantic import SecretStr

from worker.settings import Settings
from worker.stack.ports import free_port, log_tail


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


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path, *, ready_timeout_s: float = 120.0):
        if not settings.kafka_bootstrap_servers or not settings.triton_url:
            raise ValueError("WorkerProcess needs resolved broker and Triton addresses")
        self.metrics_port = settings.metrics_port or free_port()
        self.settings = settings.model_copy(update={"metrics_port": self.metrics_port})
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings)}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise WorkerProcessError(
                    f"worker exited with code {self._proc.returncode}:\n{log_tail(self.log_path)}"
                )
            if self.metric("streamrec_ready") == 1.0:
                return self
            time.sleep(0.1)
        self.stop()
        raise WorkerProcessError(f"worker not ready in time:\n{log_tail(self.log_path)}")

    def metric(self, name: str) -> float | None:
        return scrape_metrics(self.metrics_port).get(name)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
