"""The open-loop run: a send loop that keeps the plan's schedule whatever the answers do, and a
reader that matches `recommendations` (and DLQ records) back to the events.

One process, one event loop: the send loop hands events to the aiokafka producer (which batches
them, linger ~5 ms) and never awaits a delivery or an answer; delivery outcomes arrive through
future callbacks. Falling behind shows up as send lag, and in the latencies, which are measured
from the intended send times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from load_tests.matcher import Matcher, Sample
from load_tests.schedule import EventPlan

MAX_BURST = 256  # events sent back-to-back before yielding to the reader when catching up


class LoadTestError(RuntimeError):
    """A run could not be carried out; the message says why."""


class TargetNotAnswering(LoadTestError):
    """The system under test did not answer the warm-up events."""


@dataclass(frozen=True, slots=True)
class Topics:
    events: str
    recommendations: str
    dlq: str


@dataclass(frozen=True, slots=True)
class RunOptions:
    grace_s: float = 10.0  # after the last send, how long unanswered events may still arrive
    warmup_events: int = 20
    warmup_timeout_s: float = 180.0  # a cold worker loads models on its first batch
    sample_interval_s: float = 0.5
    linger_ms: int = 5
    fetch_max_wait_ms: int = 10


class LoadRunner:
    def __init__(
        self,
        kafka: dict[str, Any],
        topics: Topics,
        plan: EventPlan,
        options: RunOptions,
        *,
        label: str,
        progress: TextIO | None = None,
        health: Callable[[], str | None] | None = None,
    ) -> None:
        """`kafka`: aiokafka connection kwargs; `health` names a problem with the target
        (its process exited) or returns None."""
        self.kafka = kafka
        self.topics = topics
        self.plan = plan
        self.options = options
        self.label = label
        self.progress = progress
        self.health = health or (lambda: None)
        self.matcher = Matcher(plan.ids, plan.offsets, plan.bad, late_s=options.grace_s)
        self._t0 = time.perf_counter()
        self._send_done_at: float | None = None
        self._problem: str | None = None
        self._settled = asyncio.Event()  # set once every sent event is accounted for

    def now(self) -> float:
        return time.perf_counter() - self._t0

    async def run(self) -> dict[str, Any]:
        producer = AIOKafkaProducer(**self.kafka, linger_ms=self.options.linger_ms, acks="all")
        consumer = AIOKafkaConsumer(
            **self.kafka, enable_auto_commit=False, fetch_max_wait_ms=self.options.fetch_max_wait_ms
        )
        await producer.start()
        await consumer.start()
        try:
            await self._assign_at_end(consumer)
            stop_reading = asyncio.Event()
            reader = asyncio.create_task(self._read(consumer, stop_reading))
            try:
                await self._warm_up(producer)
                self._t0 = time.perf_counter()  # the clock starts: intended time 0 is now
                started_at = time.time()
                cpu_at_start = time.process_time()
                ticker = asyncio.create_task(self._tick())
                try:
                    await self._send_all(producer, started_at)
                    await producer.flush()
                    await self._drain()
                finally:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
                    self._sample()
                    cpu_s = time.process_time() - cpu_at_start
            finally:
                stop_reading.set()
                await reader
        finally:
            await consumer.stop()
            await producer.stop()
            if self.progress is not None:
                self.progress.write("\n")
        return self._result(started_at, cpu_s)

    async def _assign_at_end(self, consumer: AIOKafkaConsumer) -> None:
        """Manual assignment (no group join) at the current end of both topics, resolved before
        anything is sent: answers to this run's events can never precede the read position."""
        tps: list[TopicPartition] = []
        for topic in (self.topics.recommendations, self.topics.dlq):
            deadline = time.monotonic() + 10
            parts = consumer.partitions_for_topic(topic)
            while not parts and time.monotonic() < deadline:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise LoadTestError(f"topic {topic!r} does not exist")
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp, offset in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, offset)

    async def _read(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        recs = self.topics.recommendations
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = self.now()
            for tp, records in batches.items():
                if tp.topic == recs:
                    for record in records:
                        self.matcher.on_recommendation(record.value, now)
                else:
                    for record in records:
                        self.matcher.on_dead_letter(record.value, list(record.headers))
            if batches:
                self._check_settled()

    async def _warm_up(self, producer: AIOKafkaProducer) -> None:
        """Answers to a few events first: consumer assigned, models loaded, metadata cached."""
        count = self.options.warmup_events
        if count == 0:
            return
        wanted = {self.plan.ids.warmup(k) for k in range(count)}
        for k in range(count):
            key, value = self.plan.warmup_event(k, time.time())
            await producer.send(self.topics.events, value, key=key)
        await producer.flush()
        deadline = time.monotonic() + self.options.warmup_timeout_s
        while not wanted <= self.matcher.warmup_answered:
            problem = await asyncio.to_thread(self.health)
            if problem:
                raise TargetNotAnswering(f"{self.label} failed during warm-up: {problem}")
            if time.monotonic() > deadline:
                raise TargetNotAnswering(
                    f"{self.label} answered {len(wanted & self.matcher.warmup_answered)}/{count}"
                    f" warm-up events within {self.options.warmup_timeout_s:.0f}s"
                )
            await asyncio.sleep(0.1)

    async def _send_all(self, producer: AIOKafkaProducer, started_at: float) -> None:
        plan, matcher, topic = self.plan, self.matcher, self.topics.events
        offsets, n, seq = plan.offsets, len(plan), 0
        while seq < n:
            now = self.now()
            due = offsets[seq]
            if due > now:
                await asyncio.sleep(due - now)
                continue
            burst_end = min(n, seq + MAX_BURST)
            while seq < burst_end and offsets[seq] <= now:
                value = plan.payload(seq, started_at + offsets[seq])
                # send() only appends to the producer's batch; delivery is checked by callback.
                delivery = await producer.send(topic, value, key=plan.keys[seq])
                delivery.add_done_callback(functools.partial(self._delivered, seq))
                matcher.on_sent(seq, self.now())
                seq += 1
            await asyncio.sleep(0)  # let the reader and the producer's sender run
        self._send_done_at = self.now()

    def _delivered(self, seq: int, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self.matcher.on_send_failed(seq)
            self._check_settled()

    async def _drain(self) -> None:
        """Wait for outstanding answers until every event is settled or the grace period ends."""
        assert self._send_done_at is not None
        end = max(self._send_done_at, self.plan.duration_s) + self.options.grace_s
        self._check_settled()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), max(0.0, end - self.now()))

    def _check_settled(self) -> None:
        if self._send_done_at is not None and self.matcher.settled():
            self._settled.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.options.sample_interval_s)
            point = self._sample()
            if self._problem is None:
                # In a thread: a health check may scrape an HTTP endpoint.
                self._problem = await asyncio.to_thread(self.health)
            if self.progress is not None:
                self.progress.write("\r\x1b[K" + self._progress_line(point))
                self.progress.flush()

    def _sample(self) -> Sample:
        return self.matcher.sample(self.now())

    def _progress_line(self, point: Sample) -> str:
        m = self.matcher
        elapsed = max(point.t, 1e-9)
        phase = "sending" if self._send_done_at is None else "draining"
        p99 = f"{point.p99_ms:.1f}" if point.p99_ms is not None else "-"
        run_p99 = m.latency.percentile_ms(99.0)
        total_p99 = f"{run_p99:.1f}" if run_p99 is not None else "-"
        line = (
            f"[{self.label}] {phase} {point.t:5.1f}/{self.plan.duration_s:.0f}s "
            f"sent {m.sent}/{len(self.plan)} ({m.sent / elapsed:.0f}/s) "
            f"answered {m.answered} lag {m.lag} p99 now {p99} ms "
            f"run {total_p99} ms dup {m.duplicates}"
        )
        if self._problem:
            line += f" !! {self._problem.splitlines()[0]}"
        return line

    def _result(self, started_at: float, cpu_s: float) -> dict[str, Any]:
        m = self.matcher
        send_window = max(self._send_done_at or 0.0, self.plan.duration_s)
        return {
            "label": self.label,
            "started_at": started_at,
            "target_rate": round(self.plan.rate, 3),
            "achieved_rate": round(m.sent / send_window, 3),
            "duration_s": self.plan.duration_s,
            "send_window_s": round(send_window, 3),
            "grace_s": self.options.grace_s,
            **m.counts(),
            "dlq_stages": dict(m.dlq_stages),
            "latency_ms": m.latency.summary_ms(),
            "send_lag_ms": m.send_lag.summary_ms(),
            "spectrum_ms": m.latency.spectrum_ms(),
            "timeline": [
                {
                    "t": s.t,
                    "sent": s.sent,
                    "answered": s.answered,
                    "lag": s.lag,
                    "count": s.interval_count,
                    "p50_ms": s.p50_ms,
                    "p99_ms": s.p99_ms,
                    "max_ms": s.max_ms,
                }
                for s in m.timeline
            ],
            "hdr_latency_us": m.latency.encode(),
            "target_problem": self._problem,
            # This process's CPU (sending and reading): near the wall time means it was the limit.
            "generator_cpu_s": round(cpu_s, 2),
        }


def stderr_progress() -> TextIO | None:
    """The live line needs a terminal; piped output gets only the final summary."""
    return sys.stderr if sys.stderr.isatty() else None
