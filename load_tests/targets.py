"""Systems under test: the broker floor (the echo) and the worker, started here or already running.

Each local start uses fresh topic names and a fresh consumer group: Tansu scans every stored batch
of a partition on each fetch, so a topic carrying an earlier run's history would be slower.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from load_tests.catalogue_bench import prefill_store
from load_tests.echo import EchoProcess
from load_tests.generator import LoadTestError, Topics, stderr_progress
from load_tests.users_bench import prefill_users
from worker.kafka import all_topics, client_kwargs, ensure_topics, prefixed_topics
from worker.movielens import load_movies, movie_item_message
from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess, scrape_metrics

INDEXED_METRIC = "streamrec_items_indexed_total"


def fresh_settings(base: Settings, label: str) -> Settings:
    """`base` with topic and group names no earlier run used."""
    name = f"load-{label}-{uuid.uuid4().hex[:8]}"
    return base.model_copy(
        update={
            **prefixed_topics(name),
            "consumer_group": name,
        }
    )


def topics_of(settings: Settings) -> Topics:
    return Topics(settings.events_topic, settings.recommendations_topic, settings.events_dlq_topic)


class Target(Protocol):
    label: str

    def start(self) -> Settings:
        """Start (or prepare) the system; the settings name the topics to drive."""
        ...

    def problem(self) -> str | None:
        """Why the system stopped working (its process exited), or None."""
        ...

    @property
    def pid(self) -> int | None:
        """The system's process on this machine (its CPU is measured), or None."""
        ...

    def stop(self) -> None: ...

    def stages_ms(self) -> dict[str, float]:
        """Where the system's time went: mean ms per micro-batch by stage ({} if unknown)."""
        ...


class EchoTarget:
    """A floor: the worker's pipeline with no model work ("floor"), or a bare aiokafka
    loop with none of the worker's pipeline ("raw_floor")."""

    def __init__(
        self, base: Settings, log_dir: Path, *, drop_topics: bool, raw: bool = False
    ) -> None:
        """`drop_topics`: delete the echo's topics afterwards (on a shared cluster)."""
        self.base = base
        self.log_dir = log_dir
        self.drop_topics = drop_topics
        self.raw = raw
        self.label = "raw_floor" if raw else "floor"
        self._settings: Settings | None = None
        self._proc: EchoProcess | None = None

    def start(self) -> Settings:
        settings = self._settings = fresh_settings(self.base, self.label.replace("_", "-"))
        asyncio.run(ensure_topics(settings, _echo_topics(settings)))
        log_path = self.log_dir / f"{settings.consumer_group}.log"
        module = "load_tests.raw_echo" if self.raw else "load_tests.echo"
        self._proc = EchoProcess(settings, log_path, module).start()
        return settings

    def problem(self) -> str | None:
        return self._proc.problem() if self._proc else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stages_ms(self) -> dict[str, float]:
        return {}

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self.drop_topics and self._settings is not None:
            asyncio.run(_delete_topics(self._settings, _echo_topics(self._settings)))
        self._settings = None


class LocalWorkerTarget:
    """`python -m worker run` as child processes, `workers` of them in one consumer group,
    each with its own data directory. The first start seeds the catalogue; later starts (one
    per step) reuse the same directories, so items stay indexed."""

    label = "worker"

    def __init__(
        self,
        base: Settings,
        log_dir: Path,
        *,
        items: int,
        workers: int = 1,
        extra_items: int = 0,
        long_lived: tuple[Sequence[str], int] | None = None,
    ) -> None:
        """`extra_items`: synthetic items written into each worker's store first (see
        `catalogue_bench.prefill_store`), for runs over a large catalogue; `long_lived`:
        (user ids, events) users written there with that many past events each (see
        `users_bench.prefill_users`)."""
        self.base = base
        self.log_dir = log_dir
        self.items = items
        self.workers = workers
        self.extra_items = extra_items
        self.long_lived = long_lived
        self._seeded = False
        self._procs: list[WorkerProcess] = []

    def start(self) -> Settings:
        settings = fresh_settings(self.base, "worker")
        asyncio.run(ensure_topics(settings, all_topics(settings)))
        log_path = self.log_dir / f"{settings.consumer_group}.log"
        for n in range(self.workers):
            data_dir = (
                self.base.data_dir
                if n == 0
                else self.base.data_dir.with_name(f"{self.base.data_dir.name}-{n}")
            )
            own = settings.model_copy(update={"data_dir": data_dir, "metrics_port": 0})
            if self.extra_items and not self._seeded:
                print(f"writing {self.extra_items} synthetic items", file=sys.stderr)
                asyncio.run(prefill_store(own, self.extra_items))
            if self.long_lived and not self._seeded:
                user_ids, events = self.long_lived
                print(f"writing {len(user_ids)} users of {events} events", file=sys.stderr)
                asyncio.run(prefill_users(own, user_ids, events, self.items))
            path = log_path.with_name(f"{log_path.stem}-{n}.log") if n else log_path
            self._procs.append(WorkerProcess(own, path).start())
        if not self._seeded:
            asyncio.run(seed_catalogue(settings, self.items))
            wait_indexed(lambda: self._sum(INDEXED_METRIC), self.items, log_path)
            # Every worker holds the whole catalogue before the clock starts.
            read = (
                f'streamrec_changelog_records_read_total{{topic="{settings.item_vectors_topic}"}}'
            )
            wait_indexed(
                lambda: min(p.metric(read) or 0.0 for p in self._procs), self.items, log_path
            )
            self._seeded = True
        return settings

    def _sum(self, metric: str) -> float:
        return sum(p.metric(metric) or 0.0 for p in self._procs)

    def problem(self) -> str | None:
        return next((p for p in (proc.problem() for proc in self._procs) if p), None)

    @property
    def pid(self) -> int | None:
        return self._procs[0].pid if self._procs else None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def stages_ms(self) -> dict[str, float]:
        # Each run has fresh worker processes, so their metrics cover this run alone (and
        # the unmeasured warm-up events); the first worker's stand for all.
        return self._procs[0].stage_means_ms("events") if self._procs else {}

    def changelog_bytes(self) -> dict[str, float]:
        """Bytes written to each state changelog so far, all workers together."""
        total: dict[str, float] = {}
        prefix = 'streamrec_changelog_bytes_total{topic="'
        for proc in self._procs:
            for key, value in scrape_metrics(proc.metrics_port).items():
                if key.startswith(prefix):
                    topic = key[len(prefix) : -2].rsplit(".", 1)[-1]
                    total[topic] = total.get(topic, 0.0) + value
        return total

    def stop(self) -> None:
        for proc in self._procs:
            proc.stop()
        self._procs = []


class ExternalWorkerTarget:
    """A worker someone else runs, on the topics the settings name."""

    label = "worker"

    def __init__(self, settings: Settings, *, seed_items: int, metrics_url: str | None) -> None:
        """`seed_items`: publish that many MovieLens items first (0: the catalogue is there);
        `metrics_url`: the worker's /metrics, to wait until they are indexed."""
        self.settings = settings
        self.seed_items = seed_items
        self.metrics_url = metrics_url
        self._seeded = False

    def start(self) -> Settings:
        if self.seed_items and not self._seeded:
            asyncio.run(seed_catalogue(self.settings, self.seed_items))
            if self.metrics_url:
                url = self.metrics_url
                wait_indexed(lambda: scrape_metric(url, INDEXED_METRIC), self.seed_items, None)
            else:
                print(
                    "catalogue published; without --worker-metrics-url indexing cannot be"
                    " confirmed and may overlap the run",
                    file=sys.stderr,
                )
            self._seeded = True
        return self.settings

    def problem(self) -> str | None:
        return None

    @property
    def pid(self) -> int | None:
        return None  # runs elsewhere: its CPU is not ours to read

    def stages_ms(self) -> dict[str, float]:
        # Its metrics would span its whole life, not this run.
        return {}

    def stop(self) -> None:
        return None


def _echo_topics(settings: Settings) -> list[str]:
    return [settings.events_topic, settings.recommendations_topic, settings.events_dlq_topic]


async def _delete_topics(settings: Settings, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def follow_answers(
    settings: Settings, stop: asyncio.Event, on_answer: Callable[[float, dict[str, Any]], None]
) -> None:
    """Every recommendation published until `stop`, with the time it was read (tombstones,
    i.e. erasures, are skipped)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), fetch_max_wait_ms=10)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.recommendations_topic) or set()
        consumer.assign([TopicPartition(settings.recommendations_topic, p) for p in parts])
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for record in (r for rs in fetched.values() for r in rs if r.value is not None):
                on_answer(now, orjson.loads(record.value))
    finally:
        await consumer.stop()


async def seed_catalogue(settings: Settings, count: int) -> None:
    """Publish the first `count` MovieLens-100K movies (ids "1".."count") to the items topic."""
    movies = load_movies()
    if count > len(movies):
        raise ValueError(f"--items {count}: MovieLens-100K has {len(movies)} movies")
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=10, acks="all")
    await producer.start()
    try:
        now = time.time()
        deliveries = [
            await producer.send(
                settings.items_topic,
                orjson.dumps(movie_item_message(movie, created_at=now)),
                key=movie.item_id.encode(),
            )
            for movie in movies[:count]
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


def wait_indexed(
    read: Callable[[], float | None], expected: int, log_path: Path | None, timeout_s: float = 900
) -> None:
    """Block until the worker reports `expected` items indexed (the clock starts after)."""
    progress = stderr_progress()
    print(f"seeding the catalogue: {expected} items", file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    indexed = 0.0
    while time.monotonic() < deadline:
        indexed = read() or 0.0
        if progress is not None:
            progress.write(f"\r\x1b[K{indexed:.0f}/{expected} indexed")
        if indexed >= expected:
            if progress is not None:
                progress.write("\r\x1b[K")
            print(f"catalogue indexed: {indexed:.0f} items", file=sys.stderr)
            return
        time.sleep(0.5)
    where = f"; see {log_path}" if log_path else ""
    raise LoadTestError(f"only {indexed:.0f}/{expected} items indexed in {timeout_s:.0f}s{where}")


def scrape_metric(url: str, name: str) -> float | None:
    """One unlabelled metric from a Prometheus text endpoint; None when unreachable or absent."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name:
            return float(value)
    return None
