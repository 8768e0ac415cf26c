"""The worker's producer for its outputs and dead letters (librdkafka, acks=all).

librdkafka builds, compresses and sends record batches in its own C threads; aiokafka did
that work in Python on the event loop. Delivery reports are served on the event loop (a
short poll every millisecond while a batch awaits its reports): a poll thread would contend
for the GIL with the loop, which cost more than the polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from worker.kafka.admin import KafkaError, librdkafka_config
from worker.kafka.dead_letters import dead_letter_record
from worker.records import DeadLetter, OutMessage
from worker.settings import Settings

log = logging.getLogger(__name__)
# How often delivery reports are collected while a batch awaits them (a local broker
# acknowledges in 1-3 ms), and while none does (librdkafka's logs and errors).
REPORTS_POLL_S = 0.001
IDLE_POLL_S = 1.0
# How long `publish` waits for room when librdkafka's queue is full before it tries again.
QUEUE_FULL_WAIT_S = 0.005


def producer_config(settings: Settings) -> dict[str, str | int | float | bool]:
    request_ms = int(settings.kafka_request_timeout_s * 1000)
    return librdkafka_config(settings) | {
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "request.timeout.ms": request_ms,
        "message.timeout.ms": request_ms + settings.producer_linger_ms,
        # Kafka's default partitioner (murmur2 of the key), as Java clients and aiokafka use,
        # so a key lands on the same partition whoever produces it.
        "partitioner": "murmur2_random",
        # Topics are created by the worker with their partitions and policies, never by a
        # broker's defaults on first produce.
        "allow.auto.create.topics": False,
        # One request in flight per broker: a retried request cannot overtake the next, so a
        # key's records keep their order without idempotence (which not every broker allows).
        "max.in.flight.requests.per.connection": 1,
    }


# topic, value, key, partition (-1: the partitioner's choice), headers
_Record = tuple[str, bytes | None, bytes | None, int, list[tuple[str, str | bytes | None]] | None]


class _Delivery:
    """A published batch awaiting its delivery reports."""

    __slots__ = ("error", "future", "remaining")

    def __init__(self, future: asyncio.Future[None], count: int) -> None:
        self.future = future
        self.remaining = count
        self.error: str | None = None

    def report(self, error: str | None) -> None:
        self.error = self.error or error
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            if self.error is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(KafkaError(self.error))


class OutputProducer:
    """`publish` hands a whole micro-batch to librdkafka in one pass, then waits for every
    delivery, which the caller needs before it commits the batch.

    It also watches the offsets the broker assigns: an output partition whose offsets go
    backwards was recreated under us (a broker that lost its data), and `on_data_loss` is
    told which topic, once per detection.
    """

    def __init__(
        self, settings: Settings, *, on_data_loss: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self._producer: Producer | None = None
        self._on_data_loss = on_data_loss
        self._last_offsets: dict[tuple[str, int], int] = {}
        self._awaiting = 0  # published batches whose reports are not all in
        self._published = asyncio.Event()
        self._reports: asyncio.Task[None] | None = None
        self._report_timeout_s = int(producer_config(settings)["message.timeout.ms"]) / 1000 + 5

    async def start(self) -> None:
        """Connect (librdkafka connects lazily: a metadata request proves the broker is
        there), then serve delivery reports."""
        settings = self.settings
        try:
            producer = Producer(producer_config(settings), logger=log, error_cb=_log_error)
            await asyncio.to_thread(producer.list_topics, timeout=settings.kafka_request_timeout_s)
        except KafkaException as exc:
            raise KafkaError(
                f"cannot start a producer on {settings.kafka_bootstrap_servers}: {exc!r}"
            ) from exc
        self._producer = producer
        self._reports = asyncio.create_task(self._serve_reports(producer), name="kafka-reports")

    async def stop(self) -> None:
        """Deliver what is buffered (within the request timeout), then close."""
        producer, self._producer = self._producer, None
        reports, self._reports = self._reports, None
        if reports is not None:
            reports.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reports
        if producer is None:
            return
        deadline = time.monotonic() + self.settings.kafka_request_timeout_s
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(REPORTS_POLL_S)
        if len(producer):
            log.error("%d records were not delivered before the producer closed", len(producer))

    async def _serve_reports(self, producer: Producer) -> None:
        # Reports are served here only, on the loop: the batches' counts need no lock.
        while True:
            try:
                producer.poll(0)
            except Exception:  # a callback's failure must not stop every later report
                log.exception("a delivery report's callback failed")
            if self._awaiting:
                await asyncio.sleep(REPORTS_POLL_S)
                continue
            self._published.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), IDLE_POLL_S)

    async def publish(
        self, outputs: Sequence[OutMessage], dead_letters: Sequence[DeadLetter], dlq_topic: str
    ) -> None:
        """Produce the outputs, then the dead letters to `dlq_topic` (original key and bytes
        when they fit, the reason in headers), and wait until the broker acknowledged all."""
        producer = self._producer
        if producer is None:
            raise KafkaError("OutputProducer is not started")
        records = self._records(outputs, dead_letters, dlq_topic)
        if not records:
            return
        delivery = _Delivery(asyncio.get_running_loop().create_future(), len(records))

        def delivered(error: RdKafkaError | None, message: Message) -> None:
            if error is None:
                self._watch_offset(message)
            delivery.report(None if error is None else f"produce to {message.topic()}: {error}")

        self._awaiting += 1
        self._published.set()
        try:
            for topic, value, key, partition, headers in records:
                while True:
                    try:
                        producer.produce(
                            topic, value, key, partition, on_delivery=delivered, headers=headers
                        )
                        break
                    except BufferError:  # librdkafka's queue is full: deliveries drain it
                        await asyncio.sleep(QUEUE_FULL_WAIT_S)
                    except KafkaException as exc:
                        raise KafkaError(f"produce to {topic}: {exc!r}") from exc
            # Bounded: librdkafka reports every record by `message.timeout.ms`, so a wait
            # past it means the reports are no longer served (a producer stopped meanwhile).
            await asyncio.wait_for(delivery.future, self._report_timeout_s)
        except TimeoutError as exc:
            raise KafkaError(f"no delivery report within {self._report_timeout_s:.0f} s") from exc
        finally:
            self._awaiting -= 1

    def _records(
        self, outputs: Sequence[OutMessage], dead_letters: Sequence[DeadLetter], dlq_topic: str
    ) -> list[_Record]:
        settings = self.settings
        records: list[_Record] = [
            (out.topic, out.value, out.key, -1 if out.partition is None else out.partition,
             list(out.headers) or None)
            for out in outputs
        ]  # fmt: skip
        for letter in dead_letters:
            key, value, reason = dead_letter_record(
                letter, max_bytes=settings.dlq_max_bytes, reason_chars=settings.dlq_reason_chars
            )
            records.append((dlq_topic, value, key, -1, list(reason)))
        return records

    def _watch_offset(self, message: Message) -> None:
        # Reports come in the order the broker appended a partition's records, so offsets
        # only go backwards when its log was recreated.
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return
        where = (topic, partition)
        last = self._last_offsets.get(where)
        self._last_offsets[where] = offset
        if last is not None and offset <= last:
            log.error(
                "broker data loss: offsets of %s[%d] went back from %d to %d (log recreated)",
                topic, partition, last, offset,
            )  # fmt: skip
            if self._on_data_loss is not None:
                self._on_data_loss(topic)


def _log_error(error: RdKafkaError) -> None:
    """librdkafka's client-wide errors (a broker down, all brokers down): it reconnects by
    itself; a publish that cannot complete fails with its own error."""
    log.warning("kafka producer: %s", error)
