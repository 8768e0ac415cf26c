"""The group-less changelog reader against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from worker.changelog.reader import ChangelogReader
from worker.kafka import KafkaError, OutputProducer
from worker.records import OutMessage, RawMessage
from worker.settings import Settings, load_settings

pytestmark = pytest.mark.integration


class Applied:
    def __init__(self) -> None:
        self.records: list[RawMessage] = []

    async def __call__(self, records: Sequence[RawMessage]) -> None:
        self.records += records

    def values(self, partition: int) -> list[bytes | None]:
        return [r.value for r in self.records if r.partition == partition]


Started = Callable[[], AbstractAsyncContextManager[tuple[ChangelogReader, Applied]]]


@pytest.fixture
def started(settings: Settings) -> Started:
    """A started reader of the item-rules topic (assigned nothing yet) and what it applied."""

    @asynccontextmanager
    async def start() -> AsyncIterator[tuple[ChangelogReader, Applied]]:
        applied = Applied()
        reader = ChangelogReader(settings, settings.item_rules_topic, applied)
        await reader.start()
        try:
            yield reader, applied
        finally:
            await reader.stop()

    return start


async def _publish(output: OutputProducer, topic: str, partition: int, values: list[bytes]) -> None:
    messages = [
        OutMessage(topic, b"k", v, partition=partition, headers=(("origin", b"w1"),))
        for v in values
    ]
    await output.publish(messages, [], "dlq")


async def test_catch_up_reads_each_assigned_partition_to_its_end_with_headers(
    settings: Settings, output: OutputProducer, started: Started
) -> None:
    topic = settings.item_rules_topic
    await _publish(output, topic, 0, [b"a", b"b", b"c"])
    await _publish(output, topic, 1, [b"d"])
    async with started() as (reader, applied):
        await reader.assign({0: 0, 1: 0, 2: 0})
        await reader.catch_up()
        assert applied.values(0) == [b"a", b"b", b"c"] and applied.values(1) == [b"d"]
        assert reader.next_offsets == {0: 3, 1: 1, 2: 0}
        assert all(r.headers == (("origin", b"w1"),) for r in applied.records)
        # Again, with nothing new: it returns once later fetches show the end.
        await asyncio.wait_for(reader.catch_up(), 10.0)
        await _publish(output, topic, 1, [b"e", b"f"])
        await reader.catch_up()
        assert applied.values(1) == [b"d", b"e", b"f"]


async def test_a_position_past_the_log_end_is_read_again_from_the_beginning(
    settings: Settings, output: OutputProducer, started: Started
) -> None:
    await _publish(output, settings.item_rules_topic, 0, [b"a", b"b"])
    async with started() as (reader, applied):
        # What a checkpoint left by a broker that since lost its data looks like.
        await reader.assign({0: 50, 1: 0})
        await asyncio.wait_for(reader.catch_up(), 20.0)
        assert applied.values(0) == [b"a", b"b"]
        assert reader.next_offsets == {0: 2, 1: 0}


async def test_an_empty_assignment_reads_nothing_until_the_next(
    settings: Settings, output: OutputProducer, started: Started
) -> None:
    async with started() as (reader, applied):
        await reader.assign({0: 0})
        await reader.catch_up()
        await reader.assign({})
        await _publish(output, settings.item_rules_topic, 0, [b"a"])
        await reader.catch_up()
        assert applied.records == []
        await reader.assign({0: 0})
        await reader.catch_up()
        assert applied.values(0) == [b"a"]


async def test_start_fails_clearly_without_a_broker(tmp_path: Path) -> None:
    s = load_settings(
        kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, kafka_request_timeout_s=1.0
    )
    reader = ChangelogReader(s, s.item_rules_topic, Applied())
    with pytest.raises(KafkaError, match="cannot start a reader"):
        await reader.start()


class _Message:
    """What librdkafka hands out: a record, or an event (an error) of a partition."""

    def __init__(self, partition: int, offset: int, error: int | None = None) -> None:
        self._partition, self._offset = partition, offset
        self._error = None if error is None else RdKafkaError(error)

    def error(self) -> RdKafkaError | None:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return "t"

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000

    def headers(self) -> None:
        return None


class _Consumer:
    def __init__(self, messages: list[_Message]) -> None:
        self.messages = messages
        self.assigned: list[list[tuple[int, int]]] = []

    def poll(self, timeout_s: float) -> _Message | None:
        return self.messages.pop(0) if self.messages else None

    def consume(self, count: int, timeout_s: float) -> list[_Message]:
        out, self.messages = self.messages[:count], self.messages[count:]
        return out

    def assign(self, partitions: list[RdTopicPartition]) -> None:
        self.assigned.append([(tp.partition, tp.offset) for tp in partitions])


async def test_a_partition_outside_its_log_restarts_after_the_batch_without_its_records(
    tmp_path: Path,
) -> None:
    """Its records before the error are the old log's; the others resume after the batch."""
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9", data_dir=tmp_path)
    applied = Applied()
    reader = ChangelogReader(settings, "t", applied)
    consumer = _Consumer([
        _Message(1, 3), _Message(0, 5), _Message(1, 4),
        _Message(0, 6, RdKafkaError._AUTO_OFFSET_RESET),
        _Message(2, 0, RdKafkaError._AUTO_OFFSET_RESET),  # a previous assignment's
    ])  # fmt: skip
    reader._consumer = consumer  # type: ignore[assignment]
    reader._thread = ThreadPoolExecutor(1)
    reader.next_offsets = {0: 5, 1: 3}
    await reader._step(0.01)
    assert [(r.partition, r.offset) for r in applied.records] == [(1, 3), (1, 4)]
    assert reader.next_offsets == {0: 0, 1: 5}
    assert consumer.assigned == [[(0, OFFSET_BEGINNING), (1, 5)]]
    reader._thread.shutdown()
