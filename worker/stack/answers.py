"""Waiting for the recommendation that answers one event (demo, tools)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer


async def answer_to(
    consumer: AIOKafkaConsumer, event_id: str, timeout_s: float = 30.0
) -> dict[str, Any] | None:
    """The next `recommendations` message (the consumer reads that topic) listing
    `event_id`, or None when none came within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                doc = orjson.loads(record.value or b"{}")
                if event_id in doc.get("event_ids", ()):
                    return doc
    return None
