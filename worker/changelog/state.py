"""The worker's state changelogs together: restored at start, followed while it runs,
written with every batch, snapshotted, checkpointed at shutdown (see the package doc)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from worker.changelog import changelog_messages
from worker.changelog.catalogue import CatalogueReplica
from worker.changelog.checkpoints import OffsetFile
from worker.changelog.reader import ChangelogReader
from worker.changelog.signals import SignalsFeed
from worker.changelog.users import UserStateRestorer
from worker.context import Context
from worker.errors import StartupError
from worker.fanout import fan_out
from worker.kafka import KafkaError, OutputProducer
from worker.metrics import Metrics
from worker.records import BatchResult, OutMessage, SignalUpdates

log = logging.getLogger(__name__)
# How often the local checkpoint of the materialised catalogue is written.
CHECKPOINT_INTERVAL_S = 5.0
# A signals snapshot is due at most this many deltas after the last one (or the restore).
SNAPSHOT_AFTER_DELTAS = 1000


class SharedState:
    def __init__(self, ctx: Context, output: OutputProducer, metrics: Metrics) -> None:
        settings = ctx.settings
        self.settings = settings
        self.ctx = ctx
        self.output = output
        self.metrics = metrics
        self.feed = SignalsFeed(settings, ctx.signals, metrics)
        # The embedded store is per process: its items and users come from changelogs.
        self.embedded = settings.qdrant_url is None
        self.origin = uuid.uuid4().hex.encode() if self.embedded else None
        self.offsets = OffsetFile(settings.data_dir / "changelog-offsets.json")
        self.catalogue = (
            CatalogueReplica(
                settings,
                ctx.store,
                self.offsets,
                self.origin,
                metrics,
                self._push_new_items,
                ctx.rules,
            )
            if self.origin is not None
            else None
        )
        self.users = (
            UserStateRestorer(settings, ctx.store, self.offsets, metrics) if self.embedded else None
        )
        # Held by the pushes of materialised items: an item space switch waits for them.
        self.pushes_lock = asyncio.Lock()

    async def start(self) -> None:
        """Signals and (embedded) the catalogue, up to the end of their topics."""
        catalogue = self.catalogue
        restored = await asyncio.gather(
            self.feed.start(),
            catalogue.start() if catalogue is not None else asyncio.sleep(0, 0.0),
            self._start_users(),
        )
        self.metrics.restore_seconds.labels("signals").set(self.feed.restore_seconds)
        if catalogue is not None:
            self.metrics.restore_seconds.labels("catalogue").set(restored[1])

    async def _start_users(self) -> None:
        if self.users is not None:
            await self.users.start()
            await self._check_copartitioned()

    def changelog(self, outcome: BatchResult, batch_id: str) -> list[OutMessage]:
        return changelog_messages(outcome, self.settings, batch_id=batch_id, origin=self.origin)

    async def restore_users(self, partitions: list[int]) -> None:
        if self.users is not None:
            seconds = await self.users.restore(partitions)
            self.metrics.restore_seconds.labels("users").set(seconds)

    def chores(
        self, stop: asyncio.Event, owns_partition_zero: Callable[[], bool]
    ) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self.feed.reader.follow(stop), name="signals-feed")]
        tasks.append(asyncio.create_task(self._snapshots(owns_partition_zero), name="snapshots"))
        if self.catalogue is not None:
            tasks.append(asyncio.create_task(self.catalogue.reader.follow(stop), name="catalogue"))
            tasks.append(asyncio.create_task(self._checkpoints(), name="checkpoints"))
        return tasks

    async def close(self) -> None:
        if self.catalogue is not None:
            with contextlib.suppress(Exception):
                self.catalogue.checkpoint()
        readers = [self.feed.reader]
        readers += [r.reader for r in (self.catalogue, self.users) if r is not None]
        for reader in readers:
            with contextlib.suppress(Exception):
                await reader.stop()

    async def _push_new_items(self, item_ids: list[str]) -> None:
        """Another worker's new items, pushed to this worker's users (see fanout.py).
        Pushes are extras: a failure is logged, never retried into a stall."""
        ctx = self.ctx
        try:
            async with self.pushes_lock:
                outputs, pushes, answered = await fan_out(item_ids, ctx, now=ctx.clock())
            await self.output.publish(outputs, [], self.settings.items_dlq_topic)
        except Exception:
            log.exception("new-item fan-out of %d materialised items failed", len(item_ids))
            return
        ctx.signals.apply(SignalUpdates(pushes=pushes))
        for out in outputs:
            self.metrics.messages_out.labels(out.topic).inc()
        self.metrics.count_answers(answered)

    async def write_snapshot(self) -> int:
        """One snapshot of the signals now; returns its size in bytes."""
        snapshot = self.feed.snapshot()
        messages = await snapshot.messages(self.settings)
        await self.output.publish(messages, [], self.settings.events_dlq_topic)
        size = sum(len(m.value or b"") for m in messages)
        self.metrics.changelog_bytes.labels(self.settings.signals_snapshots_topic).inc(size)
        return size

    async def _snapshots(self, owns_partition_zero: Callable[[], bool]) -> None:
        """One writer, the owner of events partition 0 (there is one, whatever the count),
        every SIGNALS_SNAPSHOT_INTERVAL_S, or sooner once SNAPSHOT_AFTER_DELTAS deltas came
        after the last snapshot: a worker restarted more often than the interval would
        otherwise never write one, and each restart would replay more."""
        written_at, written_after = time.monotonic(), 0
        while True:
            await asyncio.sleep(1.0)
            deltas = self.feed.reader.records_read - written_after
            due = time.monotonic() - written_at >= self.settings.signals_snapshot_interval_s
            if not (due or deltas >= SNAPSHOT_AFTER_DELTAS) or not owns_partition_zero():
                continue
            read = self.feed.reader.records_read
            try:
                size = await self.write_snapshot()
            except KafkaError as exc:
                log.warning("signals snapshot not written: %s", exc)
                continue
            written_at, written_after = time.monotonic(), read
            log.info("signals snapshot written: %d bytes, %d deltas after the last", size, deltas)

    async def _checkpoints(self) -> None:
        assert self.catalogue is not None
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            self.catalogue.checkpoint()

    async def _check_copartitioned(self) -> None:
        assert self.users is not None

        async def ignore(records: object) -> None:
            return None

        events = ChangelogReader(self.settings, self.settings.events_topic, ignore)
        await events.start()
        try:
            event_partitions = await events.partitions()
        finally:
            await events.stop()
        state_partitions = await self.users.reader.partitions()
        if len(state_partitions) < len(event_partitions):
            raise StartupError(
                f"{self.settings.user_state_topic} has {len(state_partitions)} partitions but "
                f"{self.settings.events_topic} has {len(event_partitions)}: a user's state is "
                "written to its events partition, so it needs at least as many"
            )
