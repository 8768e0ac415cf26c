"""Kafka adapter: the faust app factory, topic creation, dead-letter encoding.

Everything broker-specific lives here; the batch handlers see only `RawMessage`s and
return `OutMessage`s / `DeadLetter`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import TopicAlreadyExistsError
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport

from worker.records import DeadLetter, OutMessage, RawMessage
from worker.settings import Settings

DLQ_ERROR_HEADER = "dlq.error"
DLQ_STAGE_HEADER = "dlq.stage"


class KafkaError(RuntimeError):
    """The broker could not be reached, refused a request or did not acknowledge a write."""


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection and security options for plain aiokafka clients (admin, tests, tools)."""
    assert settings.kafka_bootstrap_servers, "bootstrap servers are resolved before use"
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context()
    if settings.kafka_sasl_mechanism:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        assert settings.kafka_sasl_password is not None
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.items_topic,
        settings.events_topic,
        settings.recommendations_topic,
        settings.items_dlq_topic,
        settings.events_dlq_topic,
    ]


async def ensure_topics(
    settings: Settings, topics: Sequence[str], *, timeout_s: float = 30.0
) -> None:
    """Create the topics that are missing (idempotent; existing ones are left alone)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            # Another worker may win the race to create them; that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, settings.topic_partitions, 1) for t in missing]
                )
    except (AIOKafkaError, TimeoutError, OSError) as exc:
        raise KafkaError(
            f"cannot create topics on {settings.kafka_bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        await admin.close()


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The DLQ record keeps the original key and bytes; the why travels in headers."""
    src = letter.source
    return [
        (DLQ_ERROR_HEADER, letter.reason.encode()),
        (DLQ_STAGE_HEADER, letter.stage.encode()),
        ("dlq.source.topic", src.topic.encode()),
        ("dlq.source.partition", str(src.partition).encode()),
        ("dlq.source.offset", str(src.offset).encode()),
        ("dlq.failed_at", f"{time.time():.3f}".encode()),
    ]


class OutputProducer:
    """The worker's producer for its outputs and dead letters (aiokafka, acks=all).

    `publish` hands a whole micro-batch to the client in one pass (aiokafka's `send` returns
    at once while its buffer has room, so nothing else runs in between), so the batch leaves
    in one produce request however short the linger; then it waits for every delivery, which
    the caller needs before it acks the batch. Measured against faust's `Topic.send` per
    message: 12 messages handed over in 0.27 ms against 1.24 ms, and with no linger delivered
    in ~1 ms against ~6.5 ms.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **client_kwargs(self.settings),
            acks="all",
            linger_ms=self.settings.producer_linger_ms,
            request_timeout_ms=30_000,
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
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(
        self, outputs: Sequence[OutMessage], dead_letters: Sequence[DeadLetter], dlq_topic: str
    ) -> None:
        """Produce the outputs, then the dead letters to `dlq_topic` (original key and bytes,
        the reason in headers), and wait until the broker has acknowledged all of them."""
        producer = self._producer
        if producer is None:
            raise KafkaError("OutputProducer is not started")
        try:
            pending = [await producer.send(out.topic, out.value, key=out.key) for out in outputs]
            for letter in dead_letters:
                pending.append(
                    await producer.send(
                        dlq_topic,
                        letter.source.value,
                        key=letter.source.key,
                        headers=dead_letter_headers(letter),
                    )
                )
            await asyncio.gather(*pending)
        except AIOKafkaError as exc:
            where = self.settings.kafka_bootstrap_servers
            raise KafkaError(f"produce to {where}: {exc!r}") from exc


def raw_message(event: faust.EventT) -> RawMessage:
    msg = event.message
    return RawMessage(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        timestamp=msg.timestamp,
    )


class _LowLatencyConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust hard-codes fetch_max_wait_ms=1500; an idle partition would then add up to
        # 1.5 s to every event that arrives while a fetch is parked at the broker.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", 10)
        return consumer


class _LowLatencyConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _LowLatencyTransport(Transport):
    Consumer = _LowLatencyConsumer


class StreamApp(faust.App):
    """faust.App whose consumer fetches with a short, configurable max wait."""

    fetch_max_wait_ms = 10

    def _new_transport(self) -> Transport:
        return _LowLatencyTransport(self.conf.broker_consumer, self)


def make_app(settings: Settings) -> StreamApp:
    """The faust app with latency-minded settings; agents are attached by `worker.app`."""
    assert settings.kafka_bootstrap_servers, "bootstrap servers are resolved before use"
    credentials: faust.types.auth.CredentialsT | None = None
    if settings.kafka_sasl_mechanism:
        assert settings.kafka_sasl_password is not None
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl.create_default_context()
            if settings.kafka_security_protocol == "SASL_SSL"
            else None,
        )
    elif settings.kafka_security_protocol == "SSL":
        credentials = faust.SSLCredentials(ssl.create_default_context())
    faust_dir = settings.data_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = StreamApp(
        settings.consumer_group,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=credentials,
        web_enabled=False,  # /metrics is served by prometheus_client on METRICS_PORT
        # faust writes a `<app id>-data` directory into the working directory otherwise.
        datadir=str(faust_dir),
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,  # no leader topic: nothing here needs a leader
        key_serializer="raw",
        value_serializer="raw",
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        stream_wait_empty=False,
        worker_redirect_stdouts=False,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app
