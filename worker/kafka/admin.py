"""Connection options, topic names, and topic creation/inspection."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from worker.errors import InfrastructureError
from worker.settings import Settings

log = logging.getLogger(__name__)


class KafkaError(InfrastructureError):
    """The broker could not be reached, refused a request or did not acknowledge a write."""

    dependency = "kafka"


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection and security options for aiokafka clients (the tools and tests; the
    worker's own clients are librdkafka's: `librdkafka_config`)."""
    assert settings.kafka_bootstrap_servers, "bootstrap servers are resolved before use"
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(settings)
    if settings.kafka_sasl_mechanism:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        assert settings.kafka_sasl_password is not None
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def librdkafka_config(settings: Settings) -> dict[str, str | int | float | bool]:
    """The same connection and security options for librdkafka (confluent-kafka) clients."""
    assert settings.kafka_bootstrap_servers, "bootstrap servers are resolved before use"
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        # Without a CA file the system's CAs are used (probed by the bundled OpenSSL).
        files = {
            "ssl.ca.location": settings.kafka_ssl_cafile,
            "ssl.certificate.location": settings.kafka_ssl_certfile,
            "ssl.key.location": settings.kafka_ssl_keyfile,
        }
        config |= {name: str(path) for name, path in files.items() if path is not None}
        if settings.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
        check = "https" if settings.kafka_ssl_check_hostname else "none"
        config["ssl.endpoint.identification.algorithm"] = check
    if settings.kafka_sasl_mechanism:
        assert settings.kafka_sasl_password is not None
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS for the brokers: the configured CA (or the system's), the client certificate for
    mutual TLS when given, certificates always verified."""
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka_ssl_certfile is not None:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            password.get_secret_value() if password else None,
        )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


TOPIC_SETTINGS = (
    "items_topic", "events_topic", "recommendations_topic", "items_dlq_topic",
    "events_dlq_topic", "signals_topic", "signals_snapshots_topic", "item_vectors_topic",
    "user_state_topic", "item_rules_topic", "user_erasures_topic",
)  # fmt: skip


def prefixed_topics(prefix: str) -> dict[str, str]:
    """Every topic setting named `<prefix>.<default name>`: a test's or a run's own topics."""
    return {name: f"{prefix}.{Settings.model_fields[name].default}" for name in TOPIC_SETTINGS}


def all_topics(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes (the changelogs too)."""
    return list(topic_configs(settings))


def topic_configs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic -> (partitions, configs) the worker creates it with when it is missing.

    The user-state changelog has the events topic's partition count: a user's state is
    written to the partition number of the events that made it (co-partitioned)."""
    n = settings.topic_partitions
    compact = {"cleanup.policy": "compact"}
    kept = {
        "cleanup.policy": "delete",
        "retention.ms": str(int(settings.signals_retention_s * 1000)),
    }
    return {
        # Keyed by item: compacted, it holds every item's latest content, which a model
        # upgrade re-embeds (worker/reembed.py).
        settings.items_topic: (n, compact),
        settings.events_topic: (n, {}),
        # Keyed by user: a compacted topic holds each user's latest list.
        settings.recommendations_topic: (n, compact),
        settings.items_dlq_topic: (n, {}),
        settings.events_dlq_topic: (n, {}),
        # One partition: every worker applies the deltas in the same order.
        settings.signals_topic: (1, kept),
        settings.signals_snapshots_topic: (1, kept),
        settings.item_vectors_topic: (n, compact),
        settings.user_state_topic: (n, compact),
        # Keyed by item: the latest rule of each item (every worker reads it whole).
        settings.item_rules_topic: (n, compact),
        # Keyed by user hash, kept forever: every erasure's cut-off must outlive replays.
        settings.user_erasures_topic: (n, {**compact, "retention.ms": "-1"}),
    }


async def ensure_topics(
    settings: Settings, topics: Sequence[str], *, timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that are missing (idempotent); returns the ones it created."""
    try:
        return await asyncio.to_thread(_ensure_now, settings, list(topics), timeout_s)
    except (KafkaException, TimeoutError) as exc:
        raise KafkaError(
            f"cannot create topics on {settings.kafka_bootstrap_servers}: {exc!r}"
        ) from exc


def _ensure_now(settings: Settings, topics: list[str], timeout_s: float) -> list[str]:
    # A client per call, made and dropped on this thread: librdkafka's teardown blocks.
    admin = AdminClient(librdkafka_config(settings), logger=log)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
        missing = [t for t in topics if t not in existing]
        if missing:
            futures = admin.create_topics(
                [_new_topic(settings, t) for t in missing],
                operation_timeout=timeout_s,
                request_timeout=timeout_s,
            )
            for future in futures.values():
                try:
                    future.result(timeout=timeout_s)
                except KafkaException as exc:
                    # Another worker may win the race to create it; that is fine.
                    if exc.args[0].code() != RdKafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        return missing
    finally:
        del admin  # not kept alive by a traceback until the loop drops it


def _new_topic(settings: Settings, topic: str) -> NewTopic:
    partitions, configs = topic_configs(settings).get(topic, (settings.topic_partitions, {}))
    return NewTopic(topic, partitions, 1, config=configs)
