"""A load session: the services a run needs (started here unless a cluster is given), the
systems under test, and one measurement per system at a given rate, floor first."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from load_tests.generator import LoadRunner, RunOptions, stderr_progress
from load_tests.procfs import tree_cpu_s
from load_tests.schedule import Arrival, build_plan, load_user_ids
from load_tests.targets import (
    EchoTarget,
    ExternalWorkerTarget,
    LocalWorkerTarget,
    Target,
    topics_of,
)
from worker.kafka import client_kwargs
from worker.settings import Settings
from worker.stack import LocalBroker, LocalStack


@dataclass(frozen=True, slots=True)
class Workload:
    users: int
    items: int
    mix: dict[str, float]
    zipf_users: float
    zipf_items: float
    arrival: Arrival
    bad_fraction: float
    seed: int


@dataclass(frozen=True, slots=True)
class Plan:
    """Which systems to measure and how to reach them."""

    floor: bool  # measure the echo (broker floor)
    worker: bool  # measure the worker
    seed_catalogue: bool  # only consulted for an external cluster; local runs always seed
    worker_metrics_url: str | None = None
    workers: int = 1  # local worker processes in one consumer group
    extra_items: int = 0  # synthetic items in each local worker's store before it starts
    user_history: int = 0  # past events of each user, in each local worker's store first


class Session:
    def __init__(self, base: Settings, plan: Plan, workload: Workload, options: RunOptions) -> None:
        """`base`: settings with kafka_bootstrap_servers set for an existing cluster and
        worker, or unset for a self-contained run on a local broker (and tritonserver)."""
        if not (plan.floor or plan.worker):
            raise ValueError("nothing to measure")
        self.base = base
        self.plan = plan
        self.workload = workload
        self.options = options
        self.external = base.kafka_bootstrap_servers is not None
        self.targets: list[Target] = []
        self._stack: LocalStack | None = None
        self._broker: LocalBroker | None = None
        self._scratch: Path | None = None

    def __enter__(self) -> Session:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        log_dir = self.base.stack_dir / "logs"
        settings = self.base
        if not self.external:
            # A fresh vector store per session; logs stay under STACK_DIR for post-mortems.
            self._scratch = Path(tempfile.mkdtemp(prefix="streamrec-load-"))
            settings = settings.model_copy(
                update={"data_dir": self._scratch / "data", "metrics_port": 0}
            )
            if self.plan.worker:
                self._stack = LocalStack(settings)
                settings = self._stack.start()
            else:
                self._broker = LocalBroker(log_dir).start()
                update = {"kafka_bootstrap_servers": self._broker.bootstrap_servers}
                settings = settings.model_copy(update=update)
        self.settings = settings
        if self.plan.floor:
            for raw in (True, False):
                self.targets.append(
                    EchoTarget(settings, log_dir, drop_topics=self.external, raw=raw)
                )
        if self.plan.worker and self.external:
            seed = self.workload.items if self.plan.seed_catalogue else 0
            target = ExternalWorkerTarget(
                settings, seed_items=seed, metrics_url=self.plan.worker_metrics_url
            )
            self.targets.append(target)
        elif self.plan.worker:
            self.targets.append(
                LocalWorkerTarget(
                    settings,
                    log_dir,
                    items=self.workload.items,
                    workers=self.plan.workers,
                    extra_items=self.plan.extra_items,
                    long_lived=(
                        (load_user_ids(self.workload.users), self.plan.user_history)
                        if self.plan.user_history
                        else None
                    ),
                )
            )

    def measure(self, rate: float, duration_s: float) -> dict[str, dict[str, Any]]:
        """One run per system at `rate`, floor first, each on its own topics and run id;
        every system gets the same events (same seed)."""
        results: dict[str, dict[str, Any]] = {}
        for target in self.targets:
            settings = target.start()
            try:
                w = self.workload
                plan = build_plan(
                    run_id=uuid.uuid4().hex[:8],
                    rate=rate,
                    duration_s=duration_s,
                    users=w.users,
                    items=w.items,
                    mix=w.mix,
                    zipf_users=w.zipf_users,
                    zipf_items=w.zipf_items,
                    arrival=w.arrival,
                    bad_fraction=w.bad_fraction,
                    seed=w.seed,
                )
                runner = LoadRunner(
                    client_kwargs(settings),
                    topics_of(settings),
                    plan,
                    self.options,
                    label=target.label,
                    progress=stderr_progress(),
                    health=target.problem,
                )
                processes = self._processes(target)
                cpu_before = {name: tree_cpu_s(pid) for name, pid in processes.items()}
                result = asyncio.run(runner.run())
                result["cpu_ms_per_event"] = self._cpu_per_event(result, processes, cpu_before)
                result["stages_ms"] = target.stages_ms()
                logged = getattr(target, "changelog_bytes", None)
                if logged is not None:
                    events = max(int(result.get("sent", 0)) + self.options.warmup_events, 1)
                    result["changelog_bytes_per_event"] = {
                        topic: round(b / events, 1) for topic, b in logged().items()
                    }
                result["topics"] = {
                    "events": settings.events_topic,
                    "recommendations": settings.recommendations_topic,
                    "dlq": settings.events_dlq_topic,
                }
                results[target.label] = result
            finally:
                target.stop()
        return results

    def _processes(self, target: Target) -> dict[str, int]:
        """The local processes a run costs: the system measured, the broker, Triton."""
        pids = getattr(target, "pids", None)
        named = {
            "system": target.pid if not pids or len(pids) == 1 else None,
            "broker": self._broker.pid if self._broker else None,
        }
        if self._stack is not None:
            named["broker"] = self._stack.broker.pid if self._stack.broker else None
            named["triton"] = self._stack.triton.pid if self._stack.triton else None
        found = {name: pid for name, pid in named.items() if pid is not None}
        if pids and len(pids) > 1:
            found |= {f"system_{n}": pid for n, pid in enumerate(pids)}
        return found

    def _cpu_per_event(
        self, result: dict[str, Any], processes: dict[str, int], before: dict[str, float]
    ) -> dict[str, float]:
        """CPU milliseconds per event over the run (its warm-up events included), from
        /proc: the steadier measure of cost on a shared machine."""
        events = max(int(result.get("sent", 0)) + self.options.warmup_events, 1)
        spent = {name: tree_cpu_s(pid) - before[name] for name, pid in processes.items()}
        workers = [s for name, s in spent.items() if name.startswith("system_")]
        if workers:  # several worker processes: the system is all of them
            spent["system"] = sum(workers)
        spent["generator"] = float(result.get("generator_cpu_s", 0.0))
        return {name: round(1000.0 * s / events, 3) for name, s in spent.items()}

    def close(self) -> None:
        for target in self.targets:
            target.stop()
        if self._stack is not None:
            self._stack.stop()
            self._stack = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
