from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fixtures.kafka import TopicReader, read_until

from worker.kafka import (
    DLQ_ERROR_HEADER,
    DLQ_STAGE_HEADER,
    KafkaError,
    OutputProducer,
    ensure_topics,
)
from worker.records import DeadLetter, OutMessage, RawMessage
from worker.settings import load_settings
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
