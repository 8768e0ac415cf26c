"""Exact accounting for a chaos run: every event sent, every answer and dead letter read."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from worker.kafka import DLQ_STAGE_HEADER


@dataclass
class Ledger:
    """Reads the answer and dead-letter topics from their start (no group), counting each
    event id answered and each source message dead-lettered."""

    bootstrap: str
    answers_topic: str
    dlq_topics: list[str]
    answered: Counter[str] = field(default_factory=Counter)
    first_answer_at: dict[str, float] = field(default_factory=dict)
    items_of: dict[str, list[str]] = field(default_factory=dict)  # event id -> first answer
    dead: Counter[tuple[str, int, int]] = field(default_factory=Counter)  # source topic/p/o
    dead_stages: Counter[str] = field(default_factory=Counter)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> Ledger:
        self._task = asyncio.create_task(self._read())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        while True:  # a broker that restarts takes the consumer down with it: start again
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=50,
            )  # fmt: skip
            try:
                await consumer.start()
                await self._follow(consumer)
            except (KafkaError, OSError):
                await asyncio.sleep(0.5)
            finally:
                await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        assigned: set[TopicPartition] = set()
        topics = [self.answers_topic, *self.dlq_topics]
        while True:
            wanted = {
                TopicPartition(t, p)
                for t in topics
                for p in (consumer.partitions_for_topic(t) or ())
            }
            if wanted != assigned:
                # Topics appear (or come back) while the run goes on: follow them all.
                positions = {tp: await consumer.position(tp) for tp in assigned & wanted}
                consumer.assign(sorted(wanted))
                for tp, pos in positions.items():
                    consumer.seek(tp, pos)
                assigned = wanted
            if not assigned:
                await consumer.topics()
                await asyncio.sleep(0.2)
                continue
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    self._record(tp.topic, record.value, dict(record.headers or ()), now)
            if not batches:
                await consumer.topics()  # refresh metadata: new partitions, new topics

    def _record(
        self, topic: str, value: bytes | None, headers: dict[str, bytes], now: float
    ) -> None:
        if topic == self.answers_topic:
            answer = orjson.loads(value or b"{}")
            items = [i["item_id"] for i in answer.get("items") or ()]
            for event_id in answer.get("event_ids") or ():
                self.answered[event_id] += 1
                self.first_answer_at.setdefault(event_id, now)
                self.items_of.setdefault(event_id, items)
            return
        source = (
            headers.get("dlq.source.topic", b"").decode(),
            int(headers.get("dlq.source.partition", b"-1")),
            int(headers.get("dlq.source.offset", b"-1")),
        )
        self.dead[source] += 1
        self.dead_stages[headers.get(DLQ_STAGE_HEADER, b"?").decode()] += 1

    def account(self, sent: dict[str, tuple[str, int, int]]) -> dict[str, int]:
        """sent: event id -> where it was produced. Lost = neither answered nor dead-lettered."""
        answered = sum(1 for e in sent if self.answered[e])
        dead = sum(1 for e, where in sent.items() if not self.answered[e] and self.dead[where])
        return {
            "sent": len(sent),
            "answered": answered,
            "dead_lettered": dead,
            "lost": len(sent) - answered - dead,
            "duplicated": sum(1 for e in sent if self.answered[e] > 1),
            "answers_beyond_first": sum(max(self.answered[e] - 1, 0) for e in sent),
        }
