"""The whole catalogue on every worker (embedded store): each embedded item is published
once to the compacted `item-vectors` topic (keyed by item id, a tombstone deletes), and
every worker materialises all of its partitions into its local store. Triton embeds an
item once however many workers run; the worker that embedded it wrote it already and skips
its own records. Each materialised item is then pushed to this worker's own users
(`on_upserted`: the new-item fan-out), as the embedding worker did for its users."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from worker.changelog.checkpoints import OffsetFile
from worker.changelog.codec import ChangelogDecodeError, decode_item
from worker.changelog.reader import ChangelogReader
from worker.metrics import Metrics
from worker.records import RawMessage
from worker.settings import Settings
from worker.store import ItemRecord, VectorStore

if TYPE_CHECKING:  # worker.item_rules reads its topic with this package's reader
    from worker.item_rules import RuleBook

log = logging.getLogger(__name__)
ORIGIN_HEADER = "streamrec-origin"


class CatalogueReplica:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        offsets: OffsetFile,
        origin: bytes,
        metrics: Metrics | None = None,
        on_upserted: Callable[[list[str]], Awaitable[None]] | None = None,
        rules: RuleBook | None = None,
    ) -> None:
        self.store = store
        self.offsets = offsets
        self.origin = origin
        self.topic = settings.item_vectors_topic
        self.reader = ChangelogReader.of_feed(settings, self.topic, self._apply, metrics)
        self.upserted = 0
        self.deleted = 0
        self.skipped = 0  # unreadable records
        # Items missing from the store because their latest record here is of an item space
        # the store does not hold (a restart mid-upgrade): a re-embed rebuilds them.
        self.orphans: set[str] = set()
        self.on_upserted = on_upserted
        # This worker's item-rules, laid over the rules the writing worker had in effect;
        # held while they are and the items written (item_rules.py rewrites rules under it).
        self.rules = rules
        self.writes = asyncio.Lock()

    async def start(self) -> float:
        """Materialise the topic up to its end; returns the seconds it took."""
        await self.reader.start()
        partitions = await self.reader.partitions()
        await self.reader.assign({p: self.offsets.get(self.topic, p) for p in partitions})
        seconds = await self.reader.catch_up()
        self.checkpoint()
        log.info(
            "catalogue restored from %s: %d records in %.2f s",
            self.topic, self.reader.records_read, seconds,
        )  # fmt: skip
        return seconds

    def checkpoint(self) -> None:
        self.offsets.update(self.topic, self.reader.next_offsets)
        self.offsets.save()

    async def _apply(self, records: Sequence[RawMessage]) -> None:
        latest: dict[bytes, ItemRecord | None] = {}
        for record in records:
            if record.key is None or _origin(record) == self.origin:
                continue
            latest.pop(record.key, None)  # the last write per item wins, in offset order
            if record.value is None:
                latest[record.key] = None
                continue
            try:
                latest[record.key] = decode_item(record.value)
            except ChangelogDecodeError as exc:
                self.skipped += 1
                log.warning(
                    "%s[%d]@%d skipped: %s", self.topic, record.partition, record.offset, exc
                )
        upserts = [item for item in latest.values() if item is not None]
        deletes = [key.decode() for key, item in latest.items() if item is None]
        dropped = [i.item_id for i in upserts if not self.store.holds_item_space(i.model_version)]
        if dropped:
            upserts = [i for i in upserts if self.store.holds_item_space(i.model_version)]
            held = await self.store.get_items(dropped)
            self.orphans.update(item_id for item_id in dropped if item_id not in held)
        self.orphans.difference_update([*deletes, *(i.item_id for i in upserts)])
        async with self.writes:
            if upserts and self.rules is not None:
                rules = self.rules
                upserts = [
                    dataclasses.replace(i, rules=rules.effective(i.item_id, i.own_rules))
                    for i in upserts
                ]
            if upserts:
                await self.store.upsert_items(upserts)
        if deletes:
            await self.store.delete_items(deletes)
        self.upserted += len(upserts)
        self.deleted += len(deletes)
        if upserts and self.on_upserted is not None:
            await self.on_upserted([item.item_id for item in upserts])


def _origin(record: RawMessage) -> bytes | None:
    for name, value in record.headers:
        if name == ORIGIN_HEADER:
            return value
    return None
