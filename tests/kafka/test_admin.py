"""Topic creation against the real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from worker.kafka import KafkaError, all_topics, ensure_topics, prefixed_topics
from worker.kafka.admin import librdkafka_config
from worker.settings import load_settings
from worker.stack.broker import LocalBroker

pytestmark = pytest.mark.integration


async def test_missing_topics_are_created_with_their_partitions_once(
    broker: LocalBroker, tmp_path: Path
) -> None:
    s = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        data_dir=tmp_path,
        topic_partitions=3,
        **prefixed_topics(f"admin-{uuid.uuid4().hex[:8]}"),
    )
    assert sorted(await ensure_topics(s, all_topics(s))) == sorted(all_topics(s))
    assert await ensure_topics(s, all_topics(s)) == []
    found = AdminClient(librdkafka_config(s)).list_topics(timeout=10).topics
    assert len(found[s.events_topic].partitions) == 3
    assert len(found[s.signals_topic].partitions) == 1  # one order every worker applies


async def test_an_unreachable_broker_is_a_kafka_error(tmp_path: Path) -> None:
    s = load_settings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)
    with pytest.raises(KafkaError, match="cannot create topics on 127"):
        await ensure_topics(s, all_topics(s), timeout_s=1.0)
