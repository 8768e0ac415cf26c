"""A group-less reader of chosen partitions of one changelog topic.

`catch_up` reads the partitions up to their high watermark (as the broker reported it in a
fetch response after the call began) and returns; `follow` then applies whatever arrives.
A position past the log's end means the topic was recreated (a broker that lost its
data): the partition is read again from its beginning, which a changelog allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import OffsetOutOfRangeError

from worker.kafka.admin import KafkaError, client_kwargs
from worker.metrics import Metrics
from worker.settings import Settings

log = logging.getLogger(__name__)

Apply = Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
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
        self._consumer: AIOKafkaConsumer | None = None
        self.records_read = 0
        self.bytes_read = 0
        # Partition -> the next offset to apply: advanced only after `apply` returned, so it
        # always describes what the state holds (checkpoints and snapshots record it).
        self.next_offsets: dict[int, int] = {}

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
        consumer = AIOKafkaConsumer(
            **client_kwargs(s),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            request_timeout_ms=int(s.kafka_request_timeout_s * 1000),
        )
        try:
            await consumer.start()
        except (AIOKafkaError, OSError) as exc:
            await consumer.stop()
            raise KafkaError(f"cannot start a reader of {self.topic}: {exc!r}") from exc
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def partitions(self) -> list[int]:
        consumer = self._require()
        for _ in range(50):
            try:
                # aiokafka has no public call for a topic it is not assigned yet.
                cluster = await consumer._client.fetch_all_metadata()
            except (AIOKafkaError, OSError) as exc:
                raise KafkaError(f"metadata for {self.topic}: {exc!r}") from exc
            found = cluster.partitions_for_topic(self.topic)
            if found:
                return sorted(found)
            await asyncio.sleep(0.1)
        raise KafkaError(f"topic {self.topic} has no partitions (not created?)")

    async def start_whole(self) -> float:
        """Start, read every partition from its beginning up to its end (a topic every
        worker reads whole: item rules, erasures); returns the seconds it took."""
        await self.start()
        self.assign({p: 0 for p in await self.partitions()})
        return await self.catch_up()

    def assign(self, starts: Mapping[int, int]) -> None:
        """Read these partitions from these offsets (0: the beginning)."""
        consumer = self._require()
        tps = {TopicPartition(self.topic, p): offset for p, offset in starts.items()}
        consumer.assign(list(tps))
        for tp, offset in tps.items():
            consumer.seek(tp, offset)
        self.next_offsets = dict(starts)

    async def positions(self) -> dict[int, int]:
        consumer = self._require()
        return {tp.partition: await consumer.position(tp) for tp in consumer.assignment()}

    async def catch_up(self, timeout_s: float = 600.0) -> float:
        """Apply every record up to the high watermark; returns the seconds it took."""
        self._require()
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        began_ms = time.time() * 1000
        while not await self._caught_up(began_ms):
            if time.monotonic() > deadline:
                raise KafkaError(f"{self.topic}: not caught up within {timeout_s:.0f} s")
            await self._step(0.05)
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
            fetched = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=CHUNK)
        except OffsetOutOfRangeError as exc:
            for tp in exc.args[0]:
                await self._restart(tp)
            return
        except (AIOKafkaError, OSError) as exc:
            raise KafkaError(f"read {self.topic}: {exc!r}") from exc
        records = [r for batch in fetched.values() for r in batch]
        if records:
            self.records_read += len(records)
            if self._read_counter is not None:
                self._read_counter.inc(len(records))
            self.bytes_read += sum(len(r.value or b"") + len(r.key or b"") for r in records)
            await self.apply(records)
            for r in records:
                self.next_offsets[r.partition] = max(
                    self.next_offsets.get(r.partition, 0), r.offset + 1
                )
        else:
            await self._check_beyond_end()

    async def _caught_up(self, since_ms: float) -> bool:
        consumer = self._require()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            fetched_at = consumer.last_poll_timestamp(tp)
            if highwater is None or fetched_at is None or fetched_at < since_ms:
                return False
            position = await consumer.position(tp)
            if position > highwater:  # the log was recreated under the checkpoint
                await self._restart(tp)
                return False
            if position < highwater:
                return False
        return True

    async def _check_beyond_end(self) -> None:
        # Some brokers answer a fetch past the log's end with nothing instead of
        # OFFSET_OUT_OF_RANGE; the high watermark of the response tells.
        consumer = self._require()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) > highwater:
                await self._restart(tp)

    async def _restart(self, tp: TopicPartition) -> None:
        log.error("%s[%d]: log recreated; reading it again", tp.topic, tp.partition)
        self._require().seek(tp, 0)
        self.next_offsets[tp.partition] = 0

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise KafkaError(f"the reader of {self.topic} is not started")
        return self._consumer
