"""The worker's producer for its outputs and dead letters (aiokafka, acks=all)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import RecordMetadata

from worker.kafka.admin import KafkaError, client_kwargs
from worker.kafka.dead_letters import dead_letter_record
from worker.records import DeadLetter, OutMessage
from worker.settings import Settings

log = logging.getLogger(__name__)


class OutputProducer:
    """`publish` hands a whole micro-batch to the client in one pass (aiokafka's `send`
    returns at once while its buffer has room, so nothing else runs in between), so the
    batch leaves in one produce request however short the linger; then it waits for every
    delivery, which the caller needs before it commits the batch.

    It also watches the offsets the broker assigns: an output partition whose offsets go
    backwards was recreated under us (a broker that lost its data), and `on_data_loss` is
    told which topic, once per detection.
    """

    def __init__(
        self, settings: Settings, *, on_data_loss: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._on_data_loss = on_data_loss
        self._last_offsets: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **client_kwargs(self.settings),
            acks="all",
            linger_ms=self.settings.producer_linger_ms,
            request_timeout_ms=int(self.settings.kafka_request_timeout_s * 1000),
        )
        try:
            await producer.start()
        except (AIOKafkaError, OSError) as exc:
            await producer.stop()
            raise KafkaError(
                f"cannot start a producer on {self.settings.kafka_bootstrap_servers}: {exc!r}"
            ) from exc
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is buffered, then close."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(
        self, outputs: Sequence[OutMessage], dead_letters: Sequence[DeadLetter], dlq_topic: str
    ) -> None:
        """Produce the outputs, then the dead letters to `dlq_topic` (original key and bytes
        when they fit, the reason in headers), and wait until the broker acknowledged all."""
        producer = self._producer
        if producer is None:
            raise KafkaError("OutputProducer is not started")
        settings = self.settings
        try:
            pending = [
                await producer.send(
                    out.topic,
                    out.value,
                    key=out.key,
                    partition=out.partition,
                    headers=list(out.headers) or None,
                )
                for out in outputs
            ]
            for letter in dead_letters:
                key, value, headers = dead_letter_record(
                    letter, max_bytes=settings.dlq_max_bytes, reason_chars=settings.dlq_reason_chars
                )
                pending.append(await producer.send(dlq_topic, value, key=key, headers=headers))
            for future in pending:
                # In completion order: the broker appends and acknowledges a partition's
                # records in order, so offsets only go backwards when its log was recreated.
                future.add_done_callback(self._watch_offset)
            await asyncio.gather(*pending)
        except (AIOKafkaError, OSError) as exc:
            where = settings.kafka_bootstrap_servers
            raise KafkaError(f"produce to {where}: {exc!r}") from exc

    def _watch_offset(self, future: asyncio.Future[RecordMetadata]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        meta = future.result()
        where = (meta.topic, meta.partition)
        last = self._last_offsets.get(where)
        self._last_offsets[where] = meta.offset
        if last is not None and meta.offset <= last:
            log.error(
                "broker data loss: offsets of %s[%d] went back from %d to %d (log recreated)",
                meta.topic, meta.partition, last, meta.offset,
            )  # fmt: skip
            if self._on_data_loss is not None:
                self._on_data_loss(meta.topic)
