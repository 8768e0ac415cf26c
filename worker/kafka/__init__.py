"""Kafka adapter: connection options, topics, the consumer, the producer, dead letters.

Everything broker-specific lives here; the pipelines see only `RawMessage`s and hand over
`OutMessage`s / `DeadLetter`s. Every broker failure surfaces as `KafkaError`, an
infrastructure error (retried, never the data's fault).
"""

from worker.kafka.admin import (
    KafkaError,
    all_topics,
    client_kwargs,
    ensure_topics,
    prefixed_topics,
)
from worker.kafka.consumer import KafkaSource
from worker.kafka.dead_letters import (
    DLQ_ERROR_HEADER,
    DLQ_ORIGINAL_SHA256_HEADER,
    DLQ_ORIGINAL_SIZE_HEADER,
    DLQ_STAGE_HEADER,
    DLQ_TRUNCATED_HEADER,
    bounded_reason,
    dead_letter_record,
)
from worker.kafka.producer import OutputProducer

__all__ = [
    "DLQ_ERROR_HEADER",
    "DLQ_ORIGINAL_SHA256_HEADER",
    "DLQ_ORIGINAL_SIZE_HEADER",
    "DLQ_STAGE_HEADER",
    "DLQ_TRUNCATED_HEADER",
    "KafkaError",
    "KafkaSource",
    "OutputProducer",
    "all_topics",
    "bounded_reason",
    "client_kwargs",
    "dead_letter_record",
    "ensure_topics",
    "prefixed_topics",
]
