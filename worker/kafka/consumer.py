"""The worker's consumer: one group member per pipeline, offsets committed by hand.

Nothing is committed unless the pipeline says its batch was answered (`commit`), and the
consumer never resets a position silently: an offset outside the partition's log (a broker
that lost its data, or retention that overtook the worker) is logged, reported through
`on_reset` and resumed from per `OFFSET_OUT_OF_RANGE` (earliest by default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from aiokafka.errors import KafkaError as AIOKafkaError

from worker.batching import collect_batch
from worker.kafka.admin import KafkaError, client_kwargs
from worker.records import RawMessage
from worker.settings import Settings

log = logging.getLogger(__name__)
# How long an idle fetch waits before the loop looks at its stop flag again.
IDLE_POLL_S = 0.1


class KafkaSource:
    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        *,
        listener: ConsumerRebalanceListener,
        fetch_max_wait_ms: int,
        on_reset: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self._listener = listener
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._on_reset = on_reset
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            **client_kwargs(s),
            group_id=self.group_id,
            enable_auto_commit=False,
            # "none": every reset goes through `_reset`, where it is seen and counted.
            auto_offset_reset="none",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(max(s.session_timeout_s, s.shutdown_timeout_s) * 1000),
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            request_timeout_ms=int(s.kafka_request_timeout_s * 1000),
        )
        try:
            await consumer.start()
        except (AIOKafkaError, OSError) as exc:
            await consumer.stop()
            raise KafkaError(f"cannot start a consumer for {self.topic}: {exc!r}") from exc
        consumer.subscribe([self.topic], listener=self._listener)
        self._consumer = consumer

    async def stop(self) -> None:
        """Leave the group (no commit: the pipeline committed what it answered)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def partitions(self) -> set[int]:
        """The topic's partitions in the latest metadata (empty before the first)."""
        consumer = self._consumer
        found = consumer.partitions_for_topic(self.topic) if consumer is not None else None
        return set(found or ())

    async def batch(self, size: int, within_s: float) -> list[RawMessage]:
        return await collect_batch(self._fetch, size=size, within_s=within_s, idle_s=IDLE_POLL_S)

    async def _fetch(self, timeout_s: float, max_records: int) -> list[RawMessage]:
        consumer = self._require()
        try:
            fetched = await consumer.getmany(
                timeout_ms=max(int(timeout_s * 1000), 0), max_records=max_records
            )
        except OffsetOutOfRangeError as exc:
            for tp, offset in exc.args[0].items():
                await self._reset(tp, offset, self.settings.offset_out_of_range)
            return []
        except NoOffsetForPartitionError as exc:
            await self._reset(exc.args[0], None, self.settings.auto_offset_reset)
            return []
        except (AIOKafkaError, OSError) as exc:
            raise KafkaError(f"fetch from {self.topic}: {exc!r}") from exc
        if not fetched:
            await self._check_beyond_end()
        return [
            RawMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0)
            for records in fetched.values()
            for r in records
        ]

    async def _check_beyond_end(self) -> None:
        """A position past the partition's high watermark (from the last fetch response)
        means the log is shorter than what was committed: Kafka answers such a fetch with
        OFFSET_OUT_OF_RANGE (handled above), some brokers just return nothing, which would
        stall the partition silently. Checked on idle fetches only: it costs nothing then."""
        consumer = self._require()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 1.0)
            except (AIOKafkaError, IllegalStateError, TimeoutError):
                continue
            if position > highwater:
                await self._reset(tp, position, self.settings.offset_out_of_range)

    async def _reset(self, tp: TopicPartition, offset: int | None, policy: str) -> None:
        consumer = self._require()
        if offset is not None:
            log.error(
                "%s[%d]: offset %d is outside the partition's log (broker data lost or "
                "retention passed it); resuming from the %s offset",
                tp.topic, tp.partition, offset, policy,
            )  # fmt: skip
            if self._on_reset is not None:
                self._on_reset(tp.topic, tp.partition, offset)
        try:
            if policy == "latest":
                await consumer.seek_to_end(tp)
            else:
                await consumer.seek_to_beginning(tp)
        except IllegalStateError:
            pass  # no longer assigned: its new owner starts from the committed offset

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Commit the next offset to read per partition; False when the group moved the
        partitions away meanwhile (their new owner redelivers: duplicates, not loss)."""
        consumer = self._require()
        assigned = consumer.assignment()
        wanted = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in offsets.items()
            if TopicPartition(topic, partition) in assigned
        }
        if not wanted:
            return not offsets
        try:
            await consumer.commit(wanted)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit refused after a rebalance: %s", exc)
            return False
        except (AIOKafkaError, OSError) as exc:
            raise KafkaError(f"commit on {self.topic}: {exc!r}") from exc
        return len(wanted) == len(offsets)

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise KafkaError(f"the consumer of {self.topic} is not started")
        return self._consumer
