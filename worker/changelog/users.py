"""User state follows its partition (embedded store): every saved user state also goes to
the compacted `user-state` topic, on the partition number of the events that made it; a
worker assigned an events partition first reads that partition of the changelog (from its
local checkpoint) into its store, so its answers exclude what the users saw on another
worker."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from worker.changelog.checkpoints import OffsetFile
from worker.changelog.codec import ChangelogDecodeError, decode_user
from worker.changelog.reader import ChangelogReader
from worker.metrics import Metrics
from worker.records import RawMessage
from worker.settings import Settings
from worker.store import UserState, VectorStore

log = logging.getLogger(__name__)


class UserStateRestorer:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        offsets: OffsetFile,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.offsets = offsets
        self.topic = settings.user_state_topic
        self.reader = ChangelogReader(settings, self.topic, self._apply, metrics)
        self.restored = 0
        self.stale = 0  # records older than the state held
        self.skipped = 0

    async def start(self) -> None:
        await self.reader.start()

    async def stop(self) -> None:
        await self.reader.stop()

    async def restore(self, partitions: Sequence[int]) -> float:
        """Bring these partitions' users up to date in the local store; returns seconds."""
        if not partitions:
            return 0.0
        await self.reader.assign({p: self.offsets.get(self.topic, p) for p in partitions})
        before = self.reader.records_read
        seconds = await self.reader.catch_up()
        # The checkpoint after the flush (Kafka Streams' order): the embedded users
        # collection keeps no write-ahead log, so a kill -9 loses what was not flushed, and
        # the next restore must read it again from here.
        await self.store.flush_users()
        self.offsets.update(self.topic, self.reader.next_offsets)
        # Restored: no fetching in the background until the next assignment.
        await self.reader.assign({})
        self.offsets.save()
        log.info(
            "user state of partitions %s restored: %d records in %.2f s",
            sorted(partitions), self.reader.records_read - before, seconds,
        )  # fmt: skip
        return seconds

    async def _apply(self, records: Sequence[RawMessage]) -> None:
        latest: dict[str, UserState] = {}
        erased: set[str] = set()
        for record in records:
            if record.value is None:  # an erasure: the state is deleted
                if record.key is not None:
                    user_id = record.key.decode("utf-8", "replace")
                    latest.pop(user_id, None)
                    erased.add(user_id)
                continue
            try:
                state = decode_user(record.value)
            except ChangelogDecodeError as exc:
                self.skipped += 1
                log.warning(
                    "%s[%d]@%d skipped: %s", self.topic, record.partition, record.offset, exc
                )
                continue
            latest[state.user_id] = state
        # Erased: deleted; a state written after the erasure follows it here and replaces
        # nothing (the "never back" check below must not compare it with erased data).
        if erased:
            await self.store.delete_users(sorted(erased))
        if not latest:
            return
        # Never back: a producer retry may land an older state after a newer one, and this
        # worker may hold the newest already (it wrote it before the partition left).
        held = await self.store.get_users([u for u in latest if u not in erased])
        newer = [
            state
            for user_id, state in latest.items()
            if user_id not in held or _progress(state) >= _progress(held[user_id])
        ]
        if newer:
            await self.store.upsert_users(newer)
        self.restored += len(newer)
        self.stale += len(latest) - len(newer)


def _progress(state: UserState) -> tuple[float, int, int]:
    """Orders the states of one user: later events, then more of them."""
    return (state.updated_at, len(state.event_keys), len(state.history))
