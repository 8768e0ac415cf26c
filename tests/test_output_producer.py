from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from fixtures.kafka import TopicReader, read_until

from worker.kafka import (
    DLQ_ERROR_HEADER,
    DLQ_STAGE_HEADER,
    KafkaError,
    OutputProducer,
    client_kwargs,
    ensure_topics,
)
from worker.records import DeadLetter, OutMessage, RawMessage
from worker.settings import Settings, load_settings
from worker.stack.broker import LocalBroker


async def test_outputs_and_dead_letters_reach_their_topics_with_key_bytes_and_reason(
    broker: LocalBroker, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    out_topic, dlq_topic = f"out-{suffix}", f"dlq-{suffix}"
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, data_dir=tmp_path / "data"
    )
    await ensure_topics(settings, [out_topic, dlq_topic])
    source = RawMessage("user-events", 2, 41, b"u1", b"{not json", 1.7e9)
    output = OutputProducer(settings)
    await output.start()
    try:
        await output.publish(
            [OutMessage(out_topic, f"u{n}".encode(), f"answer {n}".encode()) for n in range(20)],
            [DeadLetter(source, "decode", "not JSON")],
            dlq_topic,
        )
    finally:
        await output.stop()

    answers = await TopicReader(broker.bootstrap_servers, out_topic).start()
    letters = await TopicReader(broker.bootstrap_servers, dlq_topic).start()
    try:
        records = await read_until(answers, 20, timeout_s=5.0)
        letter = await letters.wait_for(lambda r: True, timeout_s=5.0)
    finally:
        await answers.stop()
        await letters.stop()
    assert sorted((r.key, r.value) for r in records) == sorted(
        (f"u{n}".encode(), f"answer {n}".encode()) for n in range(20)
    )
    assert (letter.key, letter.value) == (b"u1", b"{not json")
    headers = dict(letter.headers)
    assert headers[DLQ_ERROR_HEADER] == b"not JSON"
    assert headers[DLQ_STAGE_HEADER] == b"decode"


async def test_publishing_before_start_is_a_kafka_error(tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9", data_dir=tmp_path / "data")
    with pytest.raises(KafkaError, match="not started"):
        await OutputProducer(settings).publish([], [], "dlq")


async def test_records_land_on_their_keys_partitions_in_order_however_many_batches(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """Keyed records go where Kafka's default partitioner (murmur2 of the key) puts them,
    each key's records in the order given, including past the size of one record batch."""
    topic, settings = await _fresh_topic(broker, tmp_path, partitions=4)
    body = b"x" * 3000  # 40 records of one key: several 16 KB record batches
    outputs = [OutMessage(topic, f"u{n % 5}".encode(), b"%d:" % n + body) for n in range(200)] + [
        OutMessage(topic, b"u0", b"pinned", partition=3)
    ]
    output = OutputProducer(settings)
    await output.start()
    try:
        await output.publish(outputs, [], "unused-dlq")
    finally:
        await output.stop()

    reader = await TopicReader(broker.bootstrap_servers, topic).start()
    try:
        records = await read_until(reader, len(outputs), timeout_s=10.0)
    finally:
        await reader.stop()
    assert len(records) == len(outputs)
    partitioner = DefaultPartitioner()
    for record in records:
        if record.value != b"pinned":
            assert record.partition == partitioner(record.key, [0, 1, 2, 3], [0, 1, 2, 3])
    assert [r.partition for r in records if r.value == b"pinned"] == [3]
    for key in range(5):
        sent = [n for n in range(200) if n % 5 == key]
        got = [
            int(r.value.split(b":")[0])
            for r in records
            if r.key == f"u{key}".encode() and r.value != b"pinned"
        ]
        assert got == sent


async def test_starting_without_a_reachable_broker_is_a_kafka_error(tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        kafka_request_timeout_s=1.0,
        data_dir=tmp_path / "data",
    )
    with pytest.raises(KafkaError, match="cannot start a producer"):
        await OutputProducer(settings).start()


async def test_a_recreated_output_topic_is_reported_as_broker_data_loss(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """Offsets that go backwards mean the partition's log was recreated under us."""
    topic, settings = await _fresh_topic(broker, tmp_path, partitions=1)
    lost: list[str] = []
    output = OutputProducer(settings, on_data_loss=lost.append)
    await output.start()
    try:
        await output.publish([OutMessage(topic, b"u", b"%d" % n) for n in range(5)], [], "dlq")
        assert lost == []
        await _recreate(settings, topic)
        await output.publish([OutMessage(topic, b"u", b"again")], [], "dlq")
        await asyncio.sleep(0.05)  # the report reaches the loop with a call_soon_threadsafe
    finally:
        await output.stop()
    assert lost == [topic]


async def _fresh_topic(
    broker: LocalBroker, tmp_path: Path, *, partitions: int
) -> tuple[str, Settings]:
    topic = f"out-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        data_dir=tmp_path / "data",
        topic_partitions=partitions,
    )
    await ensure_topics(settings, [topic])
    return topic, settings


async def _recreate(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    for _ in range(50):  # deletion is asynchronous on some brokers
        if await ensure_topics(settings, [topic]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topic} was not recreated")
