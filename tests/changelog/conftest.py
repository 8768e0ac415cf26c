"""A fresh set of topics and a producer per test, on the session broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from worker.kafka import OutputProducer, all_topics, ensure_topics, prefixed_topics
from worker.settings import Settings, load_settings
from worker.stack.broker import LocalBroker


@pytest.fixture
async def settings(broker: LocalBroker, tmp_path: Path) -> Settings:
    s = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        data_dir=tmp_path / "data",
        embedding_dim=4,
        **prefixed_topics(f"feeds-{uuid.uuid4().hex[:8]}"),
    )
    await ensure_topics(s, all_topics(s))
    return s


@pytest.fixture
async def output(settings: Settings) -> AsyncIterator[OutputProducer]:
    producer = OutputProducer(settings)
    await producer.start()
    yield producer
    await producer.stop()
