"""A group-less reader of chosen partitions of one changelog topic.

`catch_up` reads the assigned partitions up to their end (the high watermark a fetch made
after the assignment reported) and returns; `follow` then applies whatever arrives. A
position past the log's end means the topic was recreated (a broker that lost its data):
the partition is read again from its beginning, which a changelog allows.

librdkafka (confluent-kafka) fetches and decodes in its own threads, as for the pipelines'
consumers (worker/kafka/consumer.py); every call on it runs in one thread of the reader's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from worker.kafka.admin import KafkaError, librdkafka_config
from worker.kafka.consumer import raw_message
from worker.kafka.positions import fresh_after_s, past_end
from worker.metrics import Metrics
from worker.records import RawMessage
from worker.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

Apply = Callable[[Sequence[RawMessage]], Awaitable[None]]
# Records handed to `apply` at once (one store call per chunk).
CHUNK = 2000


class ChangelogReader:
    def __init__(
        self,
        settings: Settings,
        topic: str,
        apply: Apply,
        metrics: Metrics | None = None,
        *,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        """`fetch_max_wait_ms`: how long an empty fetch waits (default: the events'
        FETCH_MAX_WAIT_MS, at least 50 ms); a topic written seldom polls less often."""
        self.settings = settings
        self.fetch_max_wait_ms = (
            max(settings.fetch_max_wait_ms, 50) if fetch_max_wait_ms is None else fetch_max_wait_ms
        )
        self.topic = topic
        self.apply = apply
        self._read_counter = (
            None if metrics is None else metrics.changelog_records_read.labels(topic)
        )
        self._consumer: Consumer | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.records_read = 0
        self.bytes_read = 0
        # Partition -> the next offset to apply: advanced only after `apply` returned, so it
        # always describes what the state holds (checkpoints and snapshots record it).
        self.next_offsets: dict[int, int] = {}
        # Assigned partitions at their end: since the current `catch_up` began, and since
        # the last assignment.
        self._at_end: set[int] = set()
        self._ended: set[int] = set()
        self._assigned_at = 0.0

    @classmethod
    def of_feed(
        cls, settings: Settings, topic: str, apply: Apply, metrics: Metrics | None = None
    ) -> ChangelogReader:
        """A reader of a topic written seldom (item rules, erasures, other workers' item
        vectors): its empty fetches wait FEEDS_FETCH_MAX_WAIT_MS."""
        return cls(
            settings, topic, apply, metrics, fetch_max_wait_ms=settings.feeds_fetch_max_wait_ms
        )

    async def start(self) -> None:
        s = self.settings
        consumer = Consumer(
            librdkafka_config(s)
            | {
                # Never joins a group (partitions are assigned by hand and nothing is
                # committed), but librdkafka wants an id all the same: one under the
                # worker's, so the ACLs that cover the pipelines' groups cover it too.
                "group.id": f"{s.consumer_group}.changelog-reader",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # "error": a position outside the log reaches `_restart`, where it is logged.
                "auto.offset.reset": "error",
                "enable.partition.eof": True,  # how `catch_up` knows a partition's end
                "fetch.wait.max.ms": self.fetch_max_wait_ms,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "queued.max.messages.kbytes": 32 * 1024,
                "socket.timeout.ms": int(s.kafka_request_timeout_s * 1000),
            },
            logger=log,
        )
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"changelog-{self.topic}")
        try:
            await self._call(consumer.list_topics, self.topic, s.kafka_request_timeout_s)
        except KafkaException as exc:
            await self._call(consumer.close)
            self._thread.shutdown(wait=False)
            self._thread = None
            raise KafkaError(f"cannot start a reader of {self.topic}: {exc!r}") from exc
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        thread = self._thread
        if consumer is not None and thread is not None:
            try:
                await self._call(consumer.close)
            finally:
                self._thread = None
                thread.shutdown(wait=False)

    async def partitions(self) -> list[int]:
        consumer = self._require()
        for _ in range(50):
            try:
                found = await self._call(
                    consumer.list_topics, self.topic, self.settings.kafka_request_timeout_s
                )
            except KafkaException as exc:
                raise KafkaError(f"metadata for {self.topic}: {exc!r}") from exc
            topic = found.topics.get(self.topic)
            if topic is not None and topic.error is None and topic.partitions:
                return sorted(topic.partitions)
            await asyncio.sleep(0.1)
        raise KafkaError(f"topic {self.topic} has no partitions (not created?)")

    async def start_whole(self) -> float:
        """Start, read every partition from its beginning up to its end (a topic every
        worker reads whole: item rules, erasures); returns the seconds it took."""
        await self.start()
        await self.assign({p: 0 for p in await self.partitions()})
        return await self.catch_up()

    async def assign(self, starts: Mapping[int, int]) -> None:
        """Read these partitions (only these) from these offsets (0: the beginning); empty:
        read nothing (no fetches either) until the next assignment."""
        self.next_offsets = dict(starts)
        self._at_end.clear()
        await self._call(self._assign_now, self._require())

    async def catch_up(self, timeout_s: float = 600.0) -> float:
        """Apply every record up to the end of each assigned partition, as a fetch made
        during the call saw it; returns the seconds it took."""
        consumer = self._require()
        started = time.perf_counter()
        since = time.monotonic()
        deadline = since + timeout_s
        self._at_end.clear()
        while not self._at_end.issuperset(self.next_offsets):
            if time.monotonic() > deadline:
                raise KafkaError(f"{self.topic}: not caught up within {timeout_s:.0f} s")
            await self._step(0.05)
            if time.monotonic() - since >= fresh_after_s(self.fetch_max_wait_ms):
                # librdkafka reports a partition's end once per arrival there: one reached
                # before this call is told by the high watermark of later fetches.
                self._at_end.update(await self._call(self._reached_end, consumer))
        return time.perf_counter() - started

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply new records until `stop`; broker errors are logged and retried."""
        while not stop.is_set():
            try:
                await self._step(0.5)
            except KafkaError as exc:
                log.warning("%s: %s; retrying", self.topic, exc)
                await asyncio.sleep(1.0)

    async def _step(self, timeout_s: float) -> None:
        consumer = self._require()
        try:
            records, restarts = await self._call(self._fetch_now, consumer, timeout_s)
        except KafkaException as exc:
            raise KafkaError(f"read {self.topic}: {exc!r}") from exc
        if records:
            self.records_read += len(records)
            if self._read_counter is not None:
                self._read_counter.inc(len(records))
            self.bytes_read += sum(len(r.value or b"") + len(r.key or b"") for r in records)
            await self.apply(records)
            for r in records:
                next_offset = self.next_offsets.get(r.partition, 0)
                self.next_offsets[r.partition] = max(next_offset, r.offset + 1)
        if restarts:  # after the batch: the other partitions resume where it ended
            await self._call(self._restart, consumer, restarts)

    # -- in the reader's thread ----------------------------------------------------------------

    def _fetch_now(
        self, consumer: Consumer, timeout_s: float
    ) -> tuple[list[RawMessage], dict[int, int | None]]:
        """-> (the records, partition -> the offset outside its log, to read it again)."""
        # `consume` would wait for a whole chunk: the first message as soon as it comes,
        # then what is already here.
        first = consumer.poll(timeout_s)
        if first is None:
            return [], self._past_end(consumer)
        records, errors, restarts = [], [], {}
        for message in [first, *consumer.consume(CHUNK - 1, 0)]:
            error, partition = message.error(), message.partition() or 0
            if error is None:
                records.append(raw_message(message, headers=True))
            elif error.code() == RdKafkaError._PARTITION_EOF:
                self._at_end.add(partition)
                self._ended.add(partition)
            elif error.code() == RdKafkaError._AUTO_OFFSET_RESET:
                if partition in self.next_offsets:  # not a previous assignment's
                    restarts[partition] = message.offset()
            else:
                errors.append(error)
        # A partition read again from its beginning: what came before the error goes too.
        records = [r for r in records if r.partition not in restarts]
        if errors and not records:  # records came first: an error must not lose them
            raise KafkaException(errors[0])
        for error in errors:
            log.warning("read %s: %s", self.topic, error)
        return records, restarts

    def _reached_end(self, consumer: Consumer) -> list[int]:
        # Of the partitions that reached their end since the assignment: their cached high
        # watermark is this assignment's, not one left from before.
        out = []
        for partition in self._ended:
            tp = RdTopicPartition(self.topic, partition)
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high == self.next_offsets.get(partition):  # past it: see `_past_end`
                out.append(partition)
        return out

    def _past_end(self, consumer: Consumer) -> dict[int, int | None]:
        # Kafka answers a fetch past the log's end with OFFSET_OUT_OF_RANGE (handled above);
        # some brokers just return nothing, and the partition would never reach its end.
        if time.monotonic() - self._assigned_at < fresh_after_s(self.fetch_max_wait_ms):
            return {}  # the cached high watermarks may predate the assignment
        timeout_s = self.settings.kafka_request_timeout_s
        found = past_end(consumer, self.topic, self.next_offsets, timeout_s)
        return {partition: self.next_offsets[partition] for partition in found}

    def _restart(self, consumer: Consumer, restarts: Mapping[int, int | None]) -> None:
        for partition, offset in restarts.items():
            log.error(
                "%s[%d]: offset %s is outside the log (recreated, or retention passed it); "
                "reading it from its beginning",
                self.topic, partition, offset,
            )  # fmt: skip
            self.next_offsets[partition] = 0
            self._at_end.discard(partition)
        # Assigned again: librdkafka refuses a seek once it stopped a partition on an error.
        self._assign_now(consumer)

    def _assign_now(self, consumer: Consumer) -> None:
        # 0: the log's first offset, wherever retention has moved it.
        consumer.assign([
            RdTopicPartition(self.topic, p, o if o > 0 else OFFSET_BEGINNING)
            for p, o in self.next_offsets.items()
        ])  # fmt: skip
        self._ended.clear()
        self._assigned_at = time.monotonic()

    # -- helpers ---------------------------------------------------------------------------------

    async def _call(self, call: Callable[..., T], *args: object) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    def _require(self) -> Consumer:
        if self._consumer is None:
            raise KafkaError(f"the reader of {self.topic} is not started")
        return self._consumer
