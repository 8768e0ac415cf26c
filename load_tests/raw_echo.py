"""The second floor: a bare aiokafka consume -> produce echo, none of the worker's pipeline.

`python -m load_tests.raw_echo` (configured by the worker's environment variables) reads
`user-events` in one consumer group with `getmany`, answers each event with a
`recommendations`-shaped message with no items, forwards what does not decode to the
dead-letter topic, awaits every delivery and then commits. It is what any correct
at-least-once consume -> produce loop in Python costs: the floor the worker's own pipeline
(`load_tests.echo`) and the worker are compared with.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.events import EVENT_TYPES
from worker.kafka import client_kwargs
from worker.settings import Settings, load_settings


def answer(value: bytes | None, now: float) -> bytes | None:
    """The echo's answer to one event (its value), or None when the event does not decode."""
    try:
        event = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
        return None
    if event.get("type") not in EVENT_TYPES:  # the one check a consumer cannot skip
        return None
    return orjson.dumps(
        {
            "user_id": event.get("user_id"),
            "event_id": event["event_id"],
            "items": [],
            "model_version": "raw-echo",
            "generated_at": now,
            "strategy": "echo",
        }
    )


async def run_raw_echo(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    common = client_kwargs(settings)
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        **common,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    producer = AIOKafkaProducer(**common, acks="all", linger_ms=settings.producer_linger_ms)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=settings.events_batch_size)
            now = time.time()
            deliveries = []
            for record in (r for records in fetched.values() for r in records):
                value = answer(record.value, now)
                topic = settings.recommendations_topic
                headers = []
                if value is None:  # the original bytes, as a dead letter
                    topic, value = settings.events_dlq_topic, record.value or b""
                    headers = [("dlq.stage", b"decode")]
                delivery = await producer.send(topic, value, key=record.key, headers=headers)
                deliveries.append(delivery)
            if deliveries:
                await asyncio.gather(*deliveries)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> int:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run_raw_echo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
