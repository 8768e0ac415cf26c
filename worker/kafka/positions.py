"""Positions past a partition's end, for brokers that answer such a fetch with nothing.

Kafka answers a fetch from past the log's end with OFFSET_OUT_OF_RANGE; some brokers (the
local one among them) return an empty response, and a consumer would wait there silently.
The high watermark librdkafka keeps from the latest fetch response tells, once a fetch made
after the assignment has answered: before that it may be the previous assignment's. The
broker's ListOffsets answer confirms it but cannot decide alone: the local broker answers
with the start of the log's last batch plus one, short of its end.
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as RdTopicPartition


def fresh_after_s(fetch_max_wait_ms: int) -> float:
    """Seconds after an assignment by which a fetch response has updated the cached high
    watermarks: an idle fetch answers within its wait."""
    return max(1.0, 4 * fetch_max_wait_ms / 1000)


def past_end(
    consumer: Consumer, topic: str, positions: Mapping[int, int | None], timeout_s: float
) -> list[int]:
    """The partitions whose next offset is past their end: past the cached high watermark
    (call only once it is fresh: see `fresh_after_s`) and past the broker's answer."""
    out = []
    for partition, position in positions.items():
        tp = RdTopicPartition(topic, partition)
        if position is None or not _past(consumer.get_watermark_offsets(tp, cached=True), position):
            continue
        if _past(consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False), position):
            out.append(partition)
    return out


def _past(marks: tuple[int, int] | None, position: int) -> bool:
    return marks is not None and marks[1] >= 0 and position > marks[1]
