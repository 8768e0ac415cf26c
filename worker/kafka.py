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
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import TopicAlreadyExistsError
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport

from worker.records import DeadLetter, RawMessage
from worker.settings import Settings

DLQ_ERROR_HEADER = "dlq.error"
DLQ_STAGE_HEADER = "dlq.stage"


class KafkaError(RuntimeError):
    """The broker could not be reached or refused an administrative request."""


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
