"""The worker's consumer against the real broker: manual commits, visible offset resets."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from worker.kafka import KafkaError, KafkaSource, ensure_topics
from worker.records import RawMessage
from worker.settings import load_settings
from worker.stack.broker import LocalBroker


class _Listener:
    async def on_partitions_revoked(self, revoked: list[int]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[int]) -> None:
        pass


async def test_a_committed_offset_beyond_the_log_end_is_reported_and_resumed_from_earliest(
    broker: LocalBroker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    topic, group = f"reset-{run}", f"reset-group-{run}"
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, topic_partitions=1,
        data_dir=tmp_path / "data",
    )  # fmt: skip
    await ensure_topics(settings, [topic])
    for n in range(3):
        await producer.send_and_wait(topic, f"m{n}".encode(), partition=0)
    # What a broker that lost its log leaves behind: the group's offset past the log's end.
    committer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([TopicPartition(topic, 0)])
        await committer.commit({TopicPartition(topic, 0): 1000})
    finally:
        await committer.stop()

    resets: list[tuple[str, int, int]] = []
    source = KafkaSource(
        settings, topic, group, listener=_Listener(), fetch_max_wait_ms=10,
        on_reset=lambda t, p, o: resets.append((t, p, o)),
    )  # fmt: skip
    await source.start()
    try:
        got = []
        for _ in range(100):
            got += await source.batch(10, 0.05)
            if len(got) >= 3:
                break
        assert resets == [(topic, 0, 1000)]
        assert [m.value for m in got] == [b"m0", b"m1", b"m2"]
        assert await source.commit({(topic, 0): 3})
    finally:
        await source.stop()


async def _fresh_topic_source(
    broker: LocalBroker, tmp_path: Path, name: str, *, partitions: int
) -> tuple[str, KafkaSource]:
    """A new topic of `partitions` and a source (not started) in a new group reading it."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"{name}-{run}", f"{name}-group-{run}"
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, topic_partitions=partitions,
        data_dir=tmp_path / "data", session_timeout_s=2.0, heartbeat_interval_s=0.5,
    )  # fmt: skip
    await ensure_topics(settings, [topic])
    return topic, KafkaSource(settings, topic, group, listener=_Listener(), fetch_max_wait_ms=10)


async def test_the_source_knows_every_partition_of_its_topic_once_it_has_joined(
    broker: LocalBroker, tmp_path: Path
) -> None:
    # The fan-out reads them: a worker that owns them all searches its users unfiltered.
    _, source = await _fresh_topic_source(broker, tmp_path, "parts", partitions=3)
    assert source.partitions() == set()  # not started
    await source.start()
    try:
        for _ in range(100):
            await source.batch(10, 0.05)
            if source.partitions():
                break
        assert source.partitions() == {0, 1, 2}
    finally:
        await source.stop()


async def test_a_waiting_batch_takes_what_comes_during_its_wait_in_one_fetch(
    broker: LocalBroker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    # Each fetch is a hop to the consumer's thread and back: one for the first record, one
    # for the rest of the wait, not one per record as it comes.
    topic, source = await _fresh_topic_source(broker, tmp_path, "fill", partitions=1)
    await source.start()
    hops = 0
    call = source._call

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await call(*args, **kwargs)

    async def send() -> None:
        await producer.send_and_wait(topic, b"m0", partition=0)
        for n in (1, 2, 3):
            await asyncio.sleep(0.05)
            await producer.send_and_wait(topic, f"m{n}".encode(), partition=0)

    source._call = counted  # type: ignore[method-assign]
    try:
        for _ in range(100):  # joins the group: nothing there yet
            await source.batch(10, 0.05)
            if source._generation:  # assigned
                break
        sender = asyncio.create_task(send())
        batch: list[RawMessage] = []
        for _ in range(100):
            hops = 0
            batch = await _busy(source).batch(10, 1.0)
            if batch:
                break
        await sender
        assert [m.value for m in batch] == [b"m0", b"m1", b"m2", b"m3"]
        assert hops == 2
    finally:
        await source.stop()


def _source(tmp_path: Path) -> KafkaSource:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9", data_dir=tmp_path / "data")
    return KafkaSource(settings, "t", "g", listener=_Listener(), fetch_max_wait_ms=10)


def _busy(source: KafkaSource) -> KafkaSource:
    """A source whose records arrive fast enough for a batch to wait for more (see
    worker/batching.py): its batches span several fetches."""
    now = time.monotonic()
    source._arrivals.observe(0, now - 1.0)
    source._arrivals.observe(1000, now)
    return source


def _records(offsets: range) -> list[RawMessage]:
    return [RawMessage("t", 0, n, b"k", b"v", 1.7e9) for n in offsets]


async def test_a_batch_over_several_fetches_holds_each_record_once(tmp_path: Path) -> None:
    source = _busy(_source(tmp_path))
    arrivals = [_records(range(0, 3)), _records(range(3, 5)), []]

    async def fetch(timeout_s: float, max_records: int, fill: bool) -> list[RawMessage]:
        return arrivals.pop(0) if arrivals else []

    source._fetch = fetch  # type: ignore[method-assign]
    batch = await source.batch(10, 0.05)
    assert [m.offset for m in batch] == [0, 1, 2, 3, 4]


async def test_records_fetched_before_a_rebalance_leave_the_batch(tmp_path: Path) -> None:
    """Their partition starts again from its committed offset, here or at its new owner."""
    source = _busy(_source(tmp_path))
    arrivals = [_records(range(0, 3)), _records(range(7, 9)), []]

    async def fetch(timeout_s: float, max_records: int, fill: bool) -> list[RawMessage]:
        if len(arrivals) == 2:
            source._generation += 1  # what the group's callbacks do inside the second fetch
        return arrivals.pop(0) if arrivals else []

    source._fetch = fetch  # type: ignore[method-assign]
    batch = await source.batch(10, 0.05)
    assert [m.offset for m in batch] == [7, 8]


async def test_a_failing_fetch_after_records_closes_the_batch_with_them(tmp_path: Path) -> None:
    source = _busy(_source(tmp_path))
    calls = 0

    async def fetch(timeout_s: float, max_records: int, fill: bool) -> list[RawMessage]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return _records(range(0, 2))
        raise KafkaError("broker gone")

    source._fetch = fetch  # type: ignore[method-assign]
    assert [m.offset for m in await source.batch(10, 0.05)] == [0, 1]


class _HangingClose:
    """A librdkafka consumer whose close never returns (as one did after a broker lost its
    data), until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def close(self) -> None:
        self.release.wait(30.0)
        self.closed.set()


async def test_a_stop_does_not_wait_for_a_close_that_hangs(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path / "data",
        session_timeout_s=0.3,
        heartbeat_interval_s=0.1,
    )
    source = KafkaSource(settings, "t", "g", listener=_Listener(), fetch_max_wait_ms=10)
    hanging = _HangingClose()
    source._consumer = hanging  # type: ignore[assignment]
    source._thread = ThreadPoolExecutor(1)
    source._loop = asyncio.get_running_loop()
    try:
        await source.stop()  # returns after the session timeout, the close still blocked
        assert not hanging.closed.is_set()
    finally:
        hanging.release.set()
    assert source._consumer is None and source._thread is None  # a rejoin starts anew


async def test_a_batch_of_a_slow_source_closes_after_one_fetch(tmp_path: Path) -> None:
    """A new source has no arrival rate yet: its record is not held for the deadline."""
    source = _source(tmp_path)
    arrivals = [_records(range(0, 1)), _records(range(1, 3))]
    waits: list[float] = []

    async def fetch(timeout_s: float, max_records: int, fill: bool) -> list[RawMessage]:
        waits.append(timeout_s)
        return arrivals.pop(0) if arrivals else []

    source._fetch = fetch  # type: ignore[method-assign]
    assert [m.offset for m in await source.batch(10, 5.0)] == [0]
    assert len(waits) == 1
