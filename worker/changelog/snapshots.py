"""Snapshots of the shared signals on the single-partition `signals.snapshots` topic.

A snapshot is its chunks (keys `chunk:<id>:<i>`, at most CHUNK_BYTES each, below Kafka's
default message size) followed by a manifest (key `manifest`) naming the id, the chunk
count and the `signals` offset the state includes. The newest complete snapshot is the
last manifest whose chunks precede it intact; a snapshot cut short by a crash, or two
writers interleaved during a rebalance, fails that check and the one before is used.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
import zlib
from dataclasses import dataclass

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, Message
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from worker.kafka.admin import KafkaError, librdkafka_config
from worker.records import OutMessage
from worker.settings import Settings
from worker.signals import Signals

log = logging.getLogger(__name__)
CHUNK_BYTES = 512 * 1024
MANIFEST_KEY = b"manifest"
# How far back a reader looks for an intact snapshot before starting from nothing.
MAX_SCAN_BACK = 2000


@dataclass(slots=True)
class Snapshot:
    meta: dict[str, object]  # trending state, co-visitation items, positions, recent batches
    arrays: dict[str, np.ndarray]
    offset: int | None = None  # the manifest's offset, once read back
    read_seconds: float = 0.0

    @classmethod
    def take(cls, signals: Signals, positions: dict[int, int], recent: list[str]) -> Snapshot:
        items, counts, partners, together = signals.covisitation.arrays()
        trending = signals.trending.state()
        return cls(
            meta={
                "trending": {**trending, "scaled": dict(trending["scaled"])},  # type: ignore[call-overload]
                "covisitation_items": items,
                "positions": {str(p): o for p, o in positions.items()},
                "recent_batches": recent,
                "taken_at": time.time(),
            },
            arrays={
                "counts": counts.copy(),
                "partners": partners.copy(),
                "together": together.copy(),
            },
        )

    @property
    def positions(self) -> dict[int, int]:
        return {int(p): int(o) for p, o in self.meta["positions"].items()}  # type: ignore[attr-defined]

    @property
    def recent_batches(self) -> list[str]:
        return list(self.meta["recent_batches"])  # type: ignore[call-overload]

    def load_into(self, signals: Signals) -> None:
        signals.trending.restore(self.meta["trending"])  # type: ignore[arg-type]
        signals.covisitation.restore(
            list(self.meta["covisitation_items"]),  # type: ignore[call-overload]
            self.arrays["counts"],
            self.arrays["partners"],
            self.arrays["together"],
        )

    def encode(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.frombuffer(orjson.dumps(self.meta), dtype=np.uint8), **self.arrays)
        return zlib.compress(buffer.getvalue(), 1)

    @classmethod
    def decode(cls, blob: bytes) -> Snapshot:
        with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = orjson.loads(arrays.pop("meta").tobytes())
        return cls(meta=meta, arrays=arrays)

    async def messages(self, settings: Settings) -> list[OutMessage]:
        """Chunks then manifest, for partition 0 (compressed off the event loop)."""
        blob = await asyncio.to_thread(self.encode)
        snapshot_id = uuid.uuid4().hex
        topic = settings.signals_snapshots_topic
        chunks = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
        out = [
            OutMessage(topic, f"chunk:{snapshot_id}:{i}".encode(), chunk, partition=0)
            for i, chunk in enumerate(chunks)
        ]
        manifest = {"id": snapshot_id, "chunks": len(chunks), "bytes": len(blob)}
        out.append(OutMessage(topic, MANIFEST_KEY, orjson.dumps(manifest), partition=0))
        return out


async def read_latest_snapshot(settings: Settings, timeout_s: float = 60.0) -> Snapshot | None:
    """The newest intact snapshot, or None when the topic holds none."""
    started = time.perf_counter()
    try:
        snapshot = await asyncio.to_thread(_read_newest, settings, time.monotonic() + timeout_s)
    except (KafkaException, TimeoutError) as exc:
        raise KafkaError(f"read {settings.signals_snapshots_topic}: {exc!r}") from exc
    if snapshot is not None:
        snapshot.read_seconds = time.perf_counter() - started
    return snapshot


def _read_newest(settings: Settings, deadline: float) -> Snapshot | None:
    # Once, at start-up: a blocking librdkafka consumer on a thread of its own.
    consumer = Consumer(
        librdkafka_config(settings)
        | {
            # Never joined (assigned by hand); named under the worker's group, as in reader.py.
            "group.id": f"{settings.consumer_group}.changelog-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # offset 0 may be past retention
            "enable.partition.eof": True,
            "max.partition.fetch.bytes": 4 * CHUNK_BYTES,
            # Each probe re-assigns: no prefetching of megabytes that the next one drops.
            "queued.max.messages.kbytes": 8 * CHUNK_BYTES // 1024,
        },
        logger=log,
    )
    try:
        return _newest(_Partition(consumer, settings.signals_snapshots_topic, deadline))
    finally:
        consumer.close()


class _Partition:
    """Reads of partition 0 of the snapshots topic from chosen offsets."""

    def __init__(self, consumer: Consumer, topic: str, deadline: float) -> None:
        self.consumer, self.topic, self.deadline = consumer, topic, deadline

    def read(self, offset: int, count: int) -> list[Message]:
        """The records from `offset` on, up to `count` (fewer when the log ends first)."""
        self.consumer.assign([RdTopicPartition(self.topic, 0, offset)])
        records: list[Message] = []
        while len(records) < count:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"{self.topic}: no answer from offset {offset}")
            message = self.consumer.poll(0.05)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == RdKafkaError._PARTITION_EOF:
                break
            if error is not None:
                raise KafkaException(error)
            records.append(message)
        return records

    def end(self) -> int:
        """The log's end as the last fetch response reported it."""
        _, high = self.consumer.get_watermark_offsets(RdTopicPartition(self.topic, 0), cached=True)
        return max(high, 0)


def _newest(partition: _Partition) -> Snapshot | None:
    # The end from a fetch response: the local broker answers ListOffsets short of it.
    if not partition.read(0, 1):
        return None
    end = partition.end()
    for offset in range(end - 1, max(end - 1 - MAX_SCAN_BACK, -1), -1):
        (record,) = partition.read(offset, 1) or (None,)
        if record is not None and (record.offset() or 0) > offset:
            break  # read from the log's start instead: retention took this offset and those below
        if record is None or record.key() != MANIFEST_KEY:
            continue
        value = record.value()
        if value is None:
            continue
        manifest = orjson.loads(value)
        count = int(manifest["chunks"])
        if offset - count < 0:
            continue
        chunks = partition.read(offset - count, count)
        keys = [f"chunk:{manifest['id']}:{i}".encode() for i in range(count)]
        if [c.key() for c in chunks] != keys:
            log.warning("snapshot at offset %d is incomplete; trying an older one", offset)
            continue
        snapshot = Snapshot.decode(b"".join(c.value() or b"" for c in chunks))
        snapshot.offset = offset
        return snapshot
    return None
