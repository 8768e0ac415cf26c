"""One consumer group member running a batch handler: fetch -> handle -> checkpoint.

The checkpoint, in order (quix-streams' rule: outputs, then commit, then state):
  1. deliver: outputs, dead letters and changelog records (signal delta, item vectors,
     user states) acknowledged by the broker, user states saved;
  2. commit: the batch's offsets (only now: committed input always has its answers out);
  3. apply: the in-memory push limits take the batch's updates (with a changelog, trending
     and co-visitation left in step 1 as a delta every worker applies; without one, as in
     the replay, they are applied here), so a batch retried before this point counts
     nothing twice;
  4. count: metrics.

Infrastructure failures in any step are retried (see `retry`); data errors are isolated
(see `isolation`). At shutdown the loop stops fetching; a batch waiting on a failing
dependency is abandoned uncommitted, any other one finishes. A rebalance waits for the
in-flight batch's checkpoint before it gives the partitions away.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from worker.context import Context
from worker.errors import InfrastructureError
from worker.health import Health
from worker.isolation import Handler, handle_isolating
from worker.kafka import KafkaSource, OutputProducer
from worker.metrics import Metrics
from worker.records import BatchResult, OutMessage, RawMessage, SignalUpdates
from worker.retry import Abandoned, Retrier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    name: str  # "events" | "items": metric label and group suffix
    topic: str
    dlq_topic: str
    batch_size: int
    batch_wait_s: float
    fetch_max_wait_ms: int
    handler: Handler


def next_offsets(batch: Sequence[RawMessage]) -> dict[tuple[str, int], int]:
    """Per partition, the offset to commit: one past the batch's last message."""
    offsets: dict[tuple[str, int], int] = {}
    for msg in batch:
        where = (msg.topic, msg.partition)
        offsets[where] = max(offsets.get(where, 0), msg.offset + 1)
    return offsets


class Pipeline:
    def __init__(
        self,
        spec: PipelineSpec,
        ctx: Context,
        output: OutputProducer,
        health: Health,
        metrics: Metrics,
        stop: asyncio.Event,
        *,
        on_reset: Callable[[str, int, int], None] | None = None,
        changelog: Callable[[BatchResult, str], list[OutMessage]] | None = None,
        on_assigned: Callable[[list[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.output = output
        self.health = health
        self.metrics = metrics
        self.stop = stop
        settings = ctx.settings
        self.source = KafkaSource(
            settings,
            spec.topic,
            f"{settings.consumer_group}.{spec.name}",
            listener=self,
            fetch_max_wait_ms=spec.fetch_max_wait_ms,
            on_reset=on_reset,
        )
        self.retrier = Retrier(
            spec.name,
            stop,
            self._probe,
            health,
            metrics,
            backoff_max_s=settings.retry_backoff_max_s,
            probe_interval_s=settings.retry_probe_interval_s,
        )
        # Held while a batch is handled and checkpointed: whoever else takes it (a
        # rebalance, a model upgrade's switch) acts between batches.
        self.in_flight = asyncio.Lock()
        # With a changelog, trending and co-visitation reach every worker's signals through
        # the signals topic (this one's too); only push limits are applied here.
        self.changelog = changelog
        self.on_assigned = on_assigned
        self.assigned: set[int] = set()
        # Every partition of the topic, owned or not, as of the latest assignment.
        self.topic_partitions: set[int] = set()

    # -- consumer group callbacks ------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[int]) -> None:
        # The in-flight batch checkpoints (or is abandoned) before its partitions move.
        async with self.in_flight:
            self.assigned -= set(revoked)

    async def on_partitions_assigned(self, assigned: list[int]) -> None:
        partitions = sorted(assigned)
        if self.on_assigned is not None:
            # The partitions' state comes first (their records are fetched once this
            # returns), and no batch runs meanwhile: it waits on the in-flight lock.
            async with self.in_flight:
                await self.retrier.until_done("restore", lambda: self.on_assigned(partitions))  # type: ignore[misc]
        self.assigned |= set(partitions)
        self.topic_partitions.clear()
        self.topic_partitions |= self.source.partitions()
        self.health.joined(self.spec.name)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        spec = self.spec
        while not self.stop.is_set():
            try:
                batch = await self.retrier.until_done(
                    "fetch", lambda: self.source.batch(spec.batch_size, spec.batch_wait_s)
                )
            except Abandoned:
                break
            if not batch or self.stop.is_set():
                continue  # a batch fetched as the stop came is left for the next owner
            async with self.in_flight:
                try:
                    await self.process(batch)
                except Abandoned as exc:
                    self.metrics.batches_abandoned.labels(spec.name).inc()
                    log.warning("%s; %d messages left uncommitted", exc, len(batch))
                    break

    async def process(self, batch: list[RawMessage]) -> BatchResult:
        """Handle one batch and checkpoint it (the steps above)."""
        metrics, name = self.metrics, self.spec.name
        metrics.messages_in.labels(self.spec.topic).inc(len(batch))
        metrics.batch_size.labels(self.spec.topic).observe(len(batch))
        metrics.arrival_rate.labels(self.spec.topic).set(self.source.arrival_rate)
        outcome = await self.retrier.until_done("handle", lambda: self._handle(batch))
        started = time.perf_counter()
        await self._deliver(outcome)  # 1
        outcome.stage_seconds["publish"] = time.perf_counter() - started
        committed = await self.retrier.until_done(  # 2
            "commit", lambda: self.source.commit(next_offsets(batch))
        )
        if not committed:
            metrics.commits_refused.labels(name).inc()
        made = outcome.signals
        self.ctx.signals.apply(  # 3
            SignalUpdates(pushes=made.pushes) if self.changelog is not None else made
        )
        for erasure in outcome.erasures:
            self.ctx.signals.push_limiter.forget(erasure.user_id)
            self.ctx.erasures.mark_user(erasure.user_id, erasure.erased_up_to)
        for signal, updates in (("trending", outcome.signals.trending),
                                ("covisitation", outcome.signals.covisits),
                                ("push_limit", outcome.signals.pushes)):  # fmt: skip
            metrics.signal_updates.labels(signal).inc(len(updates))
        self._count(outcome)  # 4
        return outcome

    async def _handle(self, batch: list[RawMessage]) -> BatchResult:
        return await handle_isolating(
            batch,
            self.spec.handler,
            probe=self.ctx.probe,
            on_split=self.metrics.batch_splits.labels(self.spec.name).inc,
        )

    async def _deliver(self, outcome: BatchResult) -> None:
        """Publish and save concurrently; a retry redoes only the part that failed."""
        logged = [] if self.changelog is None else self.changelog(outcome, uuid.uuid4().hex)
        for record in logged:
            size = len(record.key) + len(record.value or b"")
            self.metrics.changelog_bytes.labels(record.topic).inc(size)
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "publish": lambda: self.output.publish(
                [*outcome.outputs, *logged], outcome.dead_letters, self.spec.dlq_topic
            )
        }
        if outcome.erasures:
            # The deletions first: the confirmations published below say they are done.
            await self.retrier.until_done("deliver", lambda: self._save(outcome))
        elif outcome.user_states:
            steps["save"] = lambda: self._save(outcome)

        async def remaining() -> None:
            names = list(steps)
            results = await asyncio.gather(*(steps[n]() for n in names), return_exceptions=True)
            failures = []
            for step, result in zip(names, results, strict=True):
                if isinstance(result, BaseException):
                    failures.append((step, result))
                else:
                    del steps[step]
            for _, failure in failures:
                if isinstance(failure, InfrastructureError | asyncio.CancelledError):
                    raise failure
            if failures:
                step, failure = failures[0]
                raise _Undeliverable("qdrant" if step == "save" else "kafka", failure)

        await self.retrier.until_done("deliver", remaining)

    async def _save(self, outcome: BatchResult) -> None:
        started = time.perf_counter()
        # Erased first: a state made by events after the forget is saved after it.
        await self.ctx.store.delete_users([e.user_id for e in outcome.erasures])
        await self.ctx.store.upsert_users(outcome.user_states)
        if outcome.erasures:
            # Their confirmations, published next, say the states are gone: from the disk
            # too, whatever stops the worker then (the users collection keeps no WAL).
            await self.ctx.store.flush_users()
        outcome.stage_seconds["save"] = time.perf_counter() - started

    async def _probe(self, dependency: str) -> None:
        if dependency == "triton":
            await self.ctx.triton.probe()
        elif dependency == "qdrant":
            await self.ctx.store.probe()

    def _count(self, outcome: BatchResult) -> None:
        metrics, name = self.metrics, self.spec.name
        # One increment per label, not per message: labels() is a locked dict lookup.
        for topic, count in Counter(out.topic for out in outcome.outputs).items():
            metrics.messages_out.labels(topic).inc(count)
        for stage, count in Counter(letter.stage for letter in outcome.dead_letters).items():
            metrics.messages_failed.labels(self.spec.topic, stage).inc(count)
        metrics.items_indexed.inc(outcome.indexed)
        metrics.items_deleted.inc(outcome.deleted)
        metrics.observe_stages(name, outcome.stage_seconds)
        metrics.count_answers(outcome.answers)
        metrics.erasures.inc(len(outcome.erasures))
        metrics.events_erased.inc(outcome.events_erased)
        done = time.time()
        for ts in outcome.event_timestamps:
            metrics.end_to_end_seconds.observe(max(0.0, done - ts))


class _Undeliverable(InfrastructureError):
    """Publishing or saving an already computed outcome failed for a reason that is not a
    known transport error; the outcome is valid, so it is retried like one (and shows in
    readiness) rather than dropped."""

    def __init__(self, dependency: str, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.dependency = dependency
        self.__cause__ = cause
