"""Shared signals: trending and co-visitation are global, the same on every worker.

Each batch's updates leave as one delta on the single-partition `signals` topic (in the
checkpoint's deliver step, with the answers); every worker, the one that wrote it too,
applies every delta in the topic's order, so all workers hold the same state whatever
their number. A delta delivered twice (a retried publish) carries the same batch id and is
applied once; a batch replayed after a crash brings no delta for the events its users'
states already hold (their event ids are remembered).

The worker that owns events partition 0 snapshots the state every
SIGNALS_SNAPSHOT_INTERVAL_S, or after 1,000 deltas (`snapshots.py`, `state.py`); a starting
worker loads the newest snapshot and replays the deltas after it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

from worker.changelog.codec import ChangelogDecodeError, decode_delta, encode_delta
from worker.changelog.reader import ChangelogReader
from worker.changelog.snapshots import Snapshot, read_latest_snapshot
from worker.metrics import Metrics
from worker.records import OutMessage, RawMessage, SignalUpdates
from worker.settings import Settings
from worker.signals import Signals

log = logging.getLogger(__name__)
# Batch ids remembered to drop duplicate deltas (a retried publish repeats within seconds).
RECENT_BATCHES = 10_000


def delta_message(settings: Settings, batch_id: str, updates: SignalUpdates) -> OutMessage | None:
    if not updates.trending and not updates.covisits:
        return None
    return OutMessage(
        settings.signals_topic, batch_id.encode(), encode_delta(batch_id, updates), partition=0
    )


class SignalsFeed:
    def __init__(
        self, settings: Settings, signals: Signals, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.signals = signals
        self.reader = ChangelogReader(settings, settings.signals_topic, self._apply, metrics)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.applied = 0
        self.duplicates = 0
        self.skipped = 0
        self.restore_seconds = 0.0
        self.snapshot_offset: int | None = None  # where the loaded snapshot's manifest is

    async def start(self) -> None:
        """Load the newest snapshot, then every delta after it."""
        await self.reader.start()
        partitions = await self.reader.partitions()
        snapshot = await read_latest_snapshot(self.settings)
        starts = dict.fromkeys(partitions, 0)
        if snapshot is not None:
            try:
                snapshot.load_into(self.signals)
            except ValueError as exc:
                # Settings changed shape (co-visitation neighbours): rebuild from deltas.
                log.warning("signals snapshot not loaded (%s); replaying all deltas", exc)
                self.signals.trending.restore(
                    {"scaled": {}, "reference_ts": None, "latest_ts": 0.0}
                )
                snapshot = None
        if snapshot is not None:
            starts.update(snapshot.positions)
            self._recent = OrderedDict.fromkeys(snapshot.recent_batches)
            self.snapshot_offset = snapshot.offset
        await self.reader.assign(starts)
        replay = await self.reader.catch_up()
        self.restore_seconds = replay + (snapshot.read_seconds if snapshot else 0.0)
        log.info(
            "signals restored: snapshot %s, %d deltas replayed, %.2f s",
            "none" if snapshot is None else f"at offset {snapshot.offset}",
            self.reader.records_read, self.restore_seconds,
        )  # fmt: skip

    def snapshot(self) -> Snapshot:
        """The state now and the deltas it includes (taken between two applies)."""
        return Snapshot.take(
            self.signals, dict(self.reader.next_offsets), list(self._recent)[-1000:]
        )

    async def _apply(self, records: Sequence[RawMessage]) -> None:
        for record in records:
            if record.value is None:
                continue
            try:
                batch_id, updates = decode_delta(record.value)
            except ChangelogDecodeError as exc:
                self.skipped += 1
                log.warning("signals@%d skipped: %s", record.offset, exc)
                continue
            if batch_id in self._recent:
                self.duplicates += 1
                continue
            self._recent[batch_id] = None
            if len(self._recent) > RECENT_BATCHES:
                self._recent.popitem(last=False)
            self.signals.apply(updates)
            self.applied += 1
