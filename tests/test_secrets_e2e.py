"""A planted secret, with the worker at DEBUG: absent from its logs, /metrics, dead letters
and answers."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader, read_until
from pydantic import SecretStr

from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PLANTED = "pl4nted-qdr4nt-k3y-7Zq"


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url) as reply:
        return bytes(reply.read())


async def test_a_planted_secret_appears_nowhere_the_worker_writes(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path
) -> None:
    settings = stack_settings.model_copy(
        update={"log_level": "DEBUG", "qdrant_api_key": SecretStr(PLANTED)}
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    bootstrap = settings.kafka_bootstrap_servers or ""
    answers = await TopicReader(bootstrap, settings.recommendations_topic).start()
    letters = await TopicReader(bootstrap, settings.events_dlq_topic).start()
    try:
        await producer.send_and_wait(
            settings.items_topic,
            orjson.dumps({"item_id": "i1", "title": "A film about the sea"}),
            key=b"i1",
        )
        event = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click",
                 "ts": time.time()}  # fmt: skip
        await producer.send_and_wait(settings.events_topic, orjson.dumps(event), key=b"u1")
        await producer.send_and_wait(settings.events_topic, b"{not json", key=b"u1")
        written = await read_until(answers, 1, timeout_s=20)
        written += await read_until(letters, 1, timeout_s=20)
        metrics = await asyncio.to_thread(_read, f"http://127.0.0.1:{worker.metrics_port}/metrics")
    finally:
        await answers.stop()
        await letters.stop()
        worker.stop()
    log = (tmp_path / "worker.log").read_bytes()
    assert b"DEBUG" in log  # the run really logged at DEBUG
    for where, data in [("log", log), ("metrics", metrics)] + [
        ("record", (r.value or b"") + b"".join(v for _, v in r.headers or ())) for r in written
    ]:
        assert PLANTED.encode() not in data, where
