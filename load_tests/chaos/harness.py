"""A local stack for chaos runs: broker, tritonserver and worker processes on loopback,
fresh names per run, a paced event sender and the worker's own state read back at the end."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from load_tests.procfs import tree_rss_mb
from load_tests.targets import fresh_settings
from worker.kafka import all_topics, ensure_topics
from worker.movielens import load_movies, movie_item_message
from worker.settings import Settings, load_settings
from worker.stack.broker import LocalBroker
from worker.stack.process import free_port
from worker.stack.tritonserver import TritonServer
from worker.stack.worker_process import WorkerProcess, scrape_metrics
from worker.store import EdgeVectorStore

REPO_DIR = Path(__file__).resolve().parents[2]
EVENT_TYPES = ("view", "click", "like")  # all consumption: each counts once in trending


@dataclass
class Sent:
    """Where each event went: event id -> (topic, partition, offset), and its user."""

    where: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    user_of: dict[str, str] = field(default_factory=dict)
    item_of: dict[str, str] = field(default_factory=dict)


class ChaosStack:
    def __init__(
        self, workdir: Path, *, seed: int = 7, worker_env: dict[str, object] | None = None
    ):
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.broker = LocalBroker(workdir)
        self.triton = TritonServer(REPO_DIR / "triton_repo", workdir / "tritonserver")
        self.worker_env = worker_env or {}
        self.settings: Settings | None = None
        self.worker: WorkerProcess | None = None
        self.item_ids: list[str] = []
        self.worker_starts = 0
        self.crashes = 0

    async def start(self, items: int) -> Settings:
        self.broker.start()
        self.triton.start()
        base = load_settings(
            kafka_bootstrap_servers=self.broker.bootstrap_servers,
            triton_url=self.triton.http_url,
            data_dir=self.workdir / "data",
            stack_dir=self.workdir / "stack",
            metrics_port=free_port(),
            shutdown_timeout_s=10.0,
            **self.worker_env,
        )
        # Fresh topic and group names, as every load run gets.
        self.settings = fresh_settings(base, "chaos")
        await ensure_topics(self.settings, all_topics(self.settings))
        self.start_worker()
        await self.seed_items(items)
        return self.settings

    def start_worker(self) -> float:
        """Start (or restart) the worker; seconds until it reports ready."""
        assert self.settings is not None
        started = time.monotonic()
        self.worker = WorkerProcess(
            self.settings, self.workdir / f"worker-{self.worker_starts}.log"
        )
        self.worker_starts += 1
        self.worker.start()
        return time.monotonic() - started

    def signal_worker(self, sig: int, timeout_s: float = 60.0) -> float:
        """Signal the worker and wait for it to exit; seconds it took."""
        assert self.worker is not None
        started = time.monotonic()
        self.worker.send_signal(sig)
        code = self.worker.wait_exit(timeout_s)
        if code is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait_exit(10.0)
        elif code not in (0, -signal.SIGKILL, -signal.SIGTERM):
            self.crashes += 1
        return time.monotonic() - started

    def metric(self, name: str) -> float:
        assert self.worker is not None
        return scrape_metrics(self.worker.metrics_port).get(name, 0.0)

    def metric_sum(self, prefix: str) -> float:
        """A metric summed over its labels."""
        assert self.worker is not None
        found = scrape_metrics(self.worker.metrics_port)
        return sum(v for k, v in found.items() if k == prefix or k.startswith(prefix + "{"))

    def triton_rss_mb(self) -> float:
        pid = self.triton.pid
        return tree_rss_mb(pid) if pid is not None else 0.0

    def worker_rss_mb(self) -> float:
        pid = self.worker.pid if self.worker is not None else None
        return tree_rss_mb(pid) if pid is not None else 0.0

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.problem() is None

    async def producer(self, **kwargs: object) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap_servers, **kwargs)
        await producer.start()
        return producer

    async def seed_items(self, count: int, timeout_s: float = 120.0) -> None:
        assert self.settings is not None
        movies = load_movies()[:count]
        self.item_ids = [m.item_id for m in movies]
        producer = await self.producer()
        try:
            for movie in movies:
                value = orjson.dumps(movie_item_message(movie, created_at=time.time()))
                await producer.send(self.settings.items_topic, value, key=movie.item_id.encode())
            await producer.flush()
        finally:
            await producer.stop()
        deadline = time.monotonic() + timeout_s
        while self.metric("streamrec_items_indexed_total") < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the catalogue was not indexed in time")
            await asyncio.sleep(0.2)

    def event(self, number: int, users: int, prefix: str = "c") -> tuple[str, bytes, str]:
        user = f"u{number % users}"
        event_id = f"{prefix}{number}"
        value = {
            "event_id": event_id,
            "user_id": user,
            "item_id": self.rng.choice(self.item_ids),
            "type": self.rng.choice(EVENT_TYPES),
            "ts": time.time(),
        }
        return event_id, orjson.dumps(value), user

    async def send_events(
        self, count: int, rate: float, users: int, sent: Sent, prefix: str = "c"
    ) -> None:
        """`count` events at `rate` per second (open loop), recording where each landed."""
        assert self.settings is not None
        producer = await self.producer(linger_ms=5)
        started = time.monotonic()
        try:
            pending = []
            for n in range(count):
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                event_id, value, user = self.event(n, users, prefix)
                sent.user_of[event_id] = user
                sent.item_of[event_id] = orjson.loads(value)["item_id"]
                future = await producer.send(self.settings.events_topic, value, key=user.encode())
                pending.append((event_id, future))
            for event_id, future in pending:
                meta = await future
                sent.where[event_id] = (meta.topic, meta.partition, meta.offset)
        finally:
            await producer.stop()

    async def user_state_check(
        self, sent: Sent, answered: set[str], items: list[str] | None = None
    ) -> dict[str, Any]:
        """With the worker stopped: its store read back. Double counted = an event id held
        twice in a user's history; missing = an answered event the history lacks."""
        assert self.settings is not None
        s = self.settings
        store = EdgeVectorStore(
            s.data_dir / "qdrant-edge", s.embedding_dim,
            items_collection=s.items_collection, users_collection=s.users_collection,
        )  # fmt: skip
        await store.open()
        try:
            states = await store.get_users(sorted(set(sent.user_of.values())))
            catalogue = await store.count_items()
            present = sorted(await store.get_items(items or []))
        finally:
            await store.close()
        double = missing = 0
        for state in states.values():
            ids = [i.event_id for i in state.history]
            double += len(ids) - len(set(ids))
        held = {i.event_id for st in states.values() for i in st.history}
        missing = sum(1 for e in answered if e not in held)
        return {
            "double_counted": double,
            "missing_from_state": missing,
            "items_stored": catalogue,
            "items_present": present,
        }

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.triton.stop()
        self.broker.stop()
