"""The worker's consumer: one group member per pipeline, offsets committed by hand.

librdkafka (confluent-kafka) fetches and decodes in its own C threads; aiokafka did that in
Python on the event loop. Every call on the librdkafka consumer runs in one thread of the
source's own, so calls never overlap, and the group's callbacks (served inside those calls)
run the pipeline's async listener on the loop while the thread waits: a partition's state is
restored before any of its records is fetched.

Nothing is committed unless the pipeline says its batch was answered (`commit`), and the
consumer never resets a position silently: an offset outside the partition's log (a broker
that lost its data, or retention that overtook the worker) is logged, reported through
`on_reset` and resumed from per `OFFSET_OUT_OF_RANGE` (earliest by default).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Consumer,
    KafkaException,
    Message,
)
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from worker.batching import ArrivalRate, collect_batch
from worker.kafka.admin import KafkaError, librdkafka_config
from worker.kafka.positions import fresh_after_s, past_end
from worker.records import RawMessage
from worker.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long an idle fetch waits before the loop looks at its stop flag again.
IDLE_POLL_S = 0.1
# A commit refused because the group moved on: the partitions' new owner redelivers.
_REFUSED = {
    RdKafkaError.REBALANCE_IN_PROGRESS,
    RdKafkaError.ILLEGAL_GENERATION,
    RdKafkaError.UNKNOWN_MEMBER_ID,
    RdKafkaError._STATE,
    RdKafkaError._NO_OFFSET,
}


class RebalanceListener(Protocol):
    """The pipeline's side of the group protocol, by partition number of the source's topic."""

    async def on_partitions_revoked(self, partitions: list[int]) -> None: ...

    async def on_partitions_assigned(self, partitions: list[int]) -> None: ...


class KafkaSource:
    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        *,
        listener: RebalanceListener,
        fetch_max_wait_ms: int,
        on_reset: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self._listener = listener
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._on_reset = on_reset
        self._consumer: Consumer | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._partitions: set[int] = set()
        # Each owned partition's next offset to fetch, where known (librdkafka's `position`
        # knows only what was consumed; the check below needs the committed one too).
        self._positions: dict[int, int | None] = {}
        # Bumped by every assignment and revocation: records fetched before a rebalance
        # are dropped from the batch (their partition may now start again elsewhere).
        self._generation = 0
        self._assigned_at = 0.0
        self._rejoin = False
        self._arrivals = ArrivalRate()

    async def start(self) -> None:
        s = self.settings
        consumer = Consumer(
            librdkafka_config(s)
            | {
                "group.id": self.group_id,
                "enable.auto.commit": False,
                # "error": every reset goes through `_reset`, where it is seen and counted.
                "auto.offset.reset": "error",
                "session.timeout.ms": int(s.session_timeout_s * 1000),
                "heartbeat.interval.ms": int(s.heartbeat_interval_s * 1000),
                "fetch.wait.max.ms": self._fetch_max_wait_ms,
                "socket.timeout.ms": int(s.kafka_request_timeout_s * 1000),
                "partition.assignment.strategy": "roundrobin",
                # Partitions added to the topic are seen within a topic check, not in
                # librdkafka's default five minutes.
                "topic.metadata.refresh.interval.ms": int(s.topic_check_interval_s * 1000),
            },
            logger=log,
        )
        self._loop = asyncio.get_running_loop()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{self.topic}")
        try:
            await self._call(self._metadata, consumer)
        except KafkaException as exc:
            await self._call(consumer.close)
            self._thread.shutdown()
            self._thread = None
            raise KafkaError(f"cannot start a consumer for {self.topic}: {exc!r}") from exc
        consumer.subscribe(
            [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )
        self._consumer = consumer

    async def stop(self) -> None:
        """Leave the group (no commit: the pipeline committed what it answered)."""
        consumer, self._consumer = self._consumer, None
        thread, self._thread = self._thread, None
        if consumer is not None and thread is not None:
            # librdkafka's close can hang (librdkafka#1002), as it did here after the broker
            # lost its data: the rejoin then never came. The group evicts a member that has
            # not left within its session timeout anyway, so the wait stops there and the
            # close is left to its thread.
            bound_s = self.settings.session_timeout_s
            try:
                await asyncio.wait_for(self._call(consumer.close, thread=thread), bound_s)
            except TimeoutError:
                log.warning("%s: the consumer did not close within %.1f s", self.topic, bound_s)
            finally:
                thread.shutdown(wait=False)

    def rejoin(self) -> None:
        """Leave the group and join it again as a new member, at the next fetch (between
        batches: leaving waits for the batch in flight). After a broker lost its data the
        group's generations start over, and a member that carries on can be left with an
        assignment from before."""
        self._rejoin = True

    @property
    def arrival_rate(self) -> float:
        """Records a second this source delivered lately (see worker/batching.py)."""
        return self._arrivals.per_s

    def partitions(self) -> set[int]:
        """The topic's partitions in the latest metadata (empty before the first)."""
        return set(self._partitions)

    async def batch(self, size: int, within_s: float) -> list[RawMessage]:
        if self._rejoin:
            log.warning("%s: leaving the group to join it again", self.topic)
            await self.stop()
            await self.start()  # a failure is the fetch's: retried, and so is the rejoin
            self._rejoin = False
            log.info("%s: joining the group again", self.topic)
        fetched: list[tuple[int, list[RawMessage]]] = []

        async def fetch(timeout_s: float, max_records: int, fill: bool = False) -> list[RawMessage]:
            try:
                records = await self._fetch(timeout_s, max_records, fill)
            except KafkaError as exc:
                if not fetched:
                    raise
                log.warning("%s; the batch closes with what was fetched", exc)
                return []  # consumed already: raising would lose them
            fetched.append((self._generation, records))
            return list(records)  # the batcher extends the first list it gets

        await collect_batch(
            fetch,
            size=size,
            within_s=within_s,
            idle_s=IDLE_POLL_S,
            arrivals=self._arrivals,
            fill=functools.partial(fetch, fill=True),
        )
        return [r for generation, records in fetched if generation == self._generation
                for r in records]  # fmt: skip

    async def _fetch(self, timeout_s: float, max_records: int, fill: bool) -> list[RawMessage]:
        consumer = self._require()
        now = self._fill_now if fill else self._fetch_now
        try:
            return await self._call(now, consumer, max(timeout_s, 0.0), max_records)
        except KafkaException as exc:
            raise KafkaError(f"fetch from {self.topic}: {exc!r}") from exc

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Commit the next offset to read per partition; False when the group moved the
        partitions away meanwhile (their new owner redelivers: duplicates, not loss)."""
        consumer = self._require()
        try:
            return await self._call(self._commit_now, consumer, offsets)
        except KafkaException as exc:
            raise KafkaError(f"commit on {self.topic}: {exc!r}") from exc

    # -- in the source's thread ----------------------------------------------------------------

    def _fetch_now(
        self, consumer: Consumer, timeout_s: float, max_records: int
    ) -> list[RawMessage]:
        # `consume` waits for all `max_records` (or the timeout); a batch closes on its own
        # deadline, so: the first record as soon as it comes, then what is already here.
        first = consumer.poll(timeout_s)
        if first is None:
            self._check_beyond_end(consumer)
            return []
        generation = self._generation
        rest = consumer.consume(max_records - 1, 0) if max_records > 1 else []
        # A rebalance served by `consume` makes `first` a record of the old assignment.
        return self._records(consumer, [first, *rest] if self._generation == generation else rest)

    def _fill_now(self, consumer: Consumer, timeout_s: float, max_records: int) -> list[RawMessage]:
        # The rest of a batch that waits anyway: all `max_records`, or what came by then.
        fetched = consumer.consume(max_records, timeout_s)
        if not fetched:
            self._check_beyond_end(consumer)
        return self._records(consumer, fetched)

    def _records(self, consumer: Consumer, fetched: list[Message]) -> list[RawMessage]:
        records, errors = [], []
        for message in fetched:
            error = message.error()
            if error is None:
                record = raw_message(message)
                self._positions[record.partition] = record.offset + 1
                records.append(record)
            elif error.code() == RdKafkaError._AUTO_OFFSET_RESET:
                self._reset_after(consumer, message)
            else:
                errors.append(error)
        if errors and not records:  # the records came first: an error must not lose them
            raise KafkaException(errors[0])
        for error in errors:
            log.warning("fetch from %s: %s", self.topic, error)
        return records

    def _reset_after(self, consumer: Consumer, message: Message) -> None:
        partition, offset = message.partition(), message.offset()
        if partition is None:
            return
        if offset is None or offset < 0:
            offset = self._positions.get(partition)
        if offset is None:  # no committed offset yet: the group starts here
            self._reset(consumer, partition, None, self.settings.auto_offset_reset)
        else:
            self._reset(consumer, partition, offset, self.settings.offset_out_of_range)

    def _check_beyond_end(self, consumer: Consumer) -> None:
        """A position past the partition's end means the log is shorter than what was
        committed (see worker/kafka/positions.py). Checked on idle fetches only: it costs
        nothing then."""
        if time.monotonic() - self._assigned_at < fresh_after_s(self._fetch_max_wait_ms):
            return
        timeout_s = self.settings.kafka_request_timeout_s
        for partition in past_end(consumer, self.topic, self._positions, timeout_s):
            position = self._positions[partition]
            self._reset(consumer, partition, position, self.settings.offset_out_of_range)

    def _reset(self, consumer: Consumer, partition: int, offset: int | None, policy: str) -> None:
        if offset is not None:
            log.error(
                "%s[%d]: offset %d is outside the partition's log (broker data lost or "
                "retention passed it); resuming from the %s offset",
                self.topic, partition, offset, policy,
            )  # fmt: skip
            if self._on_reset is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._on_reset, self.topic, partition, offset)
        # Assigned again (a `seek` is refused once librdkafka stopped the partition on the
        # error); the other partitions resume where the records handed out end.
        assigned = [tp.partition for tp in consumer.assignment()]
        if partition not in assigned:
            return  # no longer ours: its new owner starts from the committed offset
        self._positions[partition] = None
        start = OFFSET_END if policy == "latest" else OFFSET_BEGINNING
        offsets = {p: self._positions.get(p) for p in assigned}
        consumer.assign([
            RdTopicPartition(self.topic, p,
                             start if p == partition else OFFSET_INVALID if o is None else o)
            for p, o in offsets.items()
        ])  # fmt: skip
        self._assigned_at = time.monotonic()

    def _commit_now(self, consumer: Consumer, offsets: Mapping[tuple[str, int], int]) -> bool:
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        wanted = [RdTopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in assigned]
        if not wanted:
            return not offsets
        try:
            results = consumer.commit(offsets=wanted, asynchronous=False) or []
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, RdKafkaError) and error.code() in _REFUSED:
                log.warning("commit refused after a rebalance: %s", error)
                return False
            raise
        if any(tp.error is not None for tp in results):
            log.warning("commit refused after a rebalance: %s", [tp.error for tp in results])
            return False
        return len(wanted) == len(offsets)

    def _metadata(self, consumer: Consumer) -> None:
        found = consumer.list_topics(self.topic, timeout=self.settings.kafka_request_timeout_s)
        topic = found.topics.get(self.topic)
        if topic is not None and topic.error is None:
            self._partitions = set(topic.partitions)

    def _assigned(self, consumer: Consumer, partitions: list[RdTopicPartition]) -> None:
        """Restore first, then fetch: from the committed offsets, or where AUTO_OFFSET_RESET
        says for partitions the group never committed."""
        self._generation += 1
        timeout_s = self.settings.kafka_request_timeout_s
        start = OFFSET_END if self.settings.auto_offset_reset == "latest" else OFFSET_BEGINNING
        read = True
        try:
            self._metadata(consumer)
            partitions = consumer.committed(partitions, timeout=timeout_s)
        except KafkaException as exc:
            log.warning("offsets of %s not read at assignment: %s", self.topic, exc)
            read = False
        for tp in partitions:
            if not read or tp.error is not None:
                # Unknown here: librdkafka looks it up; none there ends in `_reset_after`.
                tp.offset = OFFSET_INVALID
            elif tp.offset < 0:  # the group never committed this partition
                tp.offset = start
            self._positions[tp.partition] = tp.offset if tp.offset >= 0 else None
        numbers = sorted(tp.partition for tp in partitions)
        log.info("%s: partitions %s assigned", self.topic, numbers)  # a rebalance, once each
        self._on_loop(self._listener.on_partitions_assigned(numbers), "assigned")
        consumer.assign(partitions)
        self._assigned_at = time.monotonic()

    def _revoked(self, consumer: Consumer, partitions: list[RdTopicPartition]) -> None:
        self._generation += 1
        numbers = sorted(tp.partition for tp in partitions)
        log.info("%s: partitions %s revoked", self.topic, numbers)
        for partition in numbers:
            self._positions.pop(partition, None)
        self._on_loop(self._listener.on_partitions_revoked(numbers), "revoked")

    def _on_loop(self, callback: Awaitable[None], what: str) -> None:
        """Run the listener on the loop and wait for it: the group waits for the pipeline."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_awaited(callback), self._loop)
        try:
            future.result()
        except Exception:
            log.exception("the %s partitions' listener of %s failed", what, self.topic)

    # -- helpers ---------------------------------------------------------------------------------

    async def _call(
        self, call: Callable[..., T], *args: object, thread: ThreadPoolExecutor | None = None
    ) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(thread or self._thread, call, *args)

    def _require(self) -> Consumer:
        if self._consumer is None:
            raise KafkaError(f"the consumer of {self.topic} is not started")
        return self._consumer


async def _awaited(callback: Awaitable[None]) -> None:
    await callback


def raw_message(message: Message, *, headers: bool = False) -> RawMessage:
    """A consumed record as the handlers take it (`headers`: with its headers, which the
    pipelines do not read)."""
    _, timestamp_ms = message.timestamp()
    return RawMessage(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        message.key(),
        message.value(),
        timestamp_ms / 1000.0,
        # A consumed message's headers are a list of (name, bytes or None).
        tuple(cast(list[tuple[str, bytes | None]], message.headers() or [])) if headers else (),
    )
