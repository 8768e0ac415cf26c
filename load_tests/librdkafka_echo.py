"""The raw echo on librdkafka (confluent-kafka) instead of aiokafka: the same loop, answers
and dead letters as `load_tests.raw_echo`, so the two differ only in the Kafka client.

`python -m load_tests.librdkafka_echo` (configured by the worker's environment variables,
its brokers' security options included) consumes up to EVENTS_BATCH_SIZE events, produces
their answers, waits for every delivery (`flush`) and commits: at-least-once like the
aiokafka echo.
`python -m load_tests clients` compares the two.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from confluent_kafka import Consumer, Message, Producer

from load_tests.raw_echo import answer
from worker.kafka.admin import librdkafka_config
from worker.settings import Settings, load_settings


def run_librdkafka_echo(settings: Settings) -> None:
    stopping = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    connection = librdkafka_config(settings)  # the worker's brokers and security options
    consumer = Consumer(
        connection
        | {
            "group.id": settings.consumer_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.heartbeat_interval_s * 1000),
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        }
    )
    producer = Producer(
        connection
        | {
            "acks": "all",
            "linger.ms": settings.producer_linger_ms,
        }
    )
    consumer.subscribe([settings.events_topic])
    try:
        while not stopping:
            batch = consumer.consume(num_messages=settings.events_batch_size, timeout=0.1)
            records = [m for m in batch if m.error() is None]
            if records:
                _answer_all(records, producer, settings)
                producer.flush()
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
        producer.flush()


def _answer_all(records: list[Message], producer: Producer, settings: Settings) -> None:
    now = time.time()
    for record in records:
        value = answer(record.value(), now)
        if value is None:  # the original bytes, as a dead letter
            producer.produce(
                settings.events_dlq_topic,
                record.value() or b"",
                record.key(),
                headers=[("dlq.stage", b"decode")],
            )
        else:
            producer.produce(settings.recommendations_topic, value, record.key())


def main() -> int:
    run_librdkafka_echo(load_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
