"""Model upgrades re-embed the catalogue (embedded store).

Triton serves a new item space when a new fusion or encoder version is published (poll
mode); its vectors must not be compared with the stored ones. Every
`REEMBED_CHECK_INTERVAL_S` the worker compares the served item space with its store's:
  1. begin: the store opens a collection for the new space; new items, which the items path
     now embeds in the new space, go there; searches stay on the old collection, whose
     vectors match the user vectors made from them;
  2. re-embed: the compacted `items` topic (every item's latest content) is read from its
     start to its end as of now and embedded in micro-batches; what the items path wrote or
     deleted meanwhile is newer and left alone; each vector is also published to
     `item-vectors`, so a restart on an empty disk restores the new space;
  3. index: a large new collection gets its HNSW index (in another process) first;
  4. switch: between batches of both pipelines, the new collection becomes the searched
     one and `model_version` follows it, once.
If Triton moves on again mid-way the pending collection is dropped and the next check
starts over towards the newest space. Each worker re-embeds for its own store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from worker.changelog.catalogue import ORIGIN_HEADER, CatalogueReplica
from worker.changelog.codec import encode_item
from worker.changelog.reader import ChangelogReader
from worker.context import Context
from worker.errors import InfrastructureError
from worker.ingest import item_record, resolve_media
from worker.items import ItemDelete, ItemUpsert, item_text, parse_item
from worker.kafka import KafkaError, OutputProducer
from worker.metrics import Metrics
from worker.records import BatchResult, OutMessage, RawMessage
from worker.store import EdgeVectorStore, ItemRecord, StoreError
from worker.triton import ItemContent, ServedVersions
from worker.validation import InvalidMessage

log = logging.getLogger(__name__)


class SpaceMoved(Exception):
    """Triton serves yet another item space than the one being re-embedded into."""


class CatalogueReembed:
    def __init__(
        self,
        ctx: Context,
        store: EdgeVectorStore,
        output: OutputProducer,
        metrics: Metrics,
        exclusive: Callable[[], AbstractAsyncContextManager[None]],
        origin: bytes | None,
        replica: CatalogueReplica | None = None,
    ) -> None:
        """`exclusive()` holds every batch handler off while the searched space switches;
        `origin` marks the published vectors as this worker's (it skips them itself);
        `replica`'s orphans (items it could not restore in the store's space) make a
        rebuild of the active space."""
        self.ctx = ctx
        self.store = store
        self.output = output
        self.metrics = metrics
        self.exclusive = exclusive
        self.origin = origin
        self.replica = replica
        self.items_embedded = 0
        self.seconds = 0.0
        self._user_model_fits: bool | None = None
        self._started = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.ctx.settings.reembed_check_interval_s
        while not stop.is_set():
            try:
                await self.check()
            except (InfrastructureError, KafkaError) as exc:
                log.warning("item space check or re-embed failed, retried: %s", exc)
            except Exception:
                log.exception("item space check or re-embed failed, retried")
            await asyncio.sleep(interval)

    async def check(self) -> bool:
        """Re-embed and switch if Triton serves another item space; True if it switched."""
        versions = await self.ctx.triton.versions()
        self._check_user_model(versions)
        target, store = versions.item_space, self.store
        orphans = set(self.replica.orphans) if self.replica is not None else set()
        current = store.item_space in ("", target)
        if current and not orphans:
            if store.pending_space is not None:
                # Triton went back to the active space, or a rebuild no longer needed.
                await store.abandon_item_space()
            self.ctx.model_version = versions.answering(store.item_space)
            return False
        if current:
            log.warning("%d items missing in %s: rebuilding the catalogue", len(orphans), target)
        else:
            log.info("item space %s -> %s: re-embedding the catalogue", store.item_space, target)
        try:
            await self.reembed(target)
        except SpaceMoved as exc:
            log.warning("re-embed into %s stopped: %s", target, exc)
            await store.abandon_item_space()
            return False
        await self._index_pending()
        await self._report_missing(target)
        async with self.exclusive():
            await store.switch_item_space()
            self.ctx.model_version = versions.answering(store.item_space)
        if self.replica is not None:
            self.replica.orphans -= orphans
        self.metrics.item_space_switches.inc()
        log.info(
            "item space switched to %s: %d items re-embedded in %.1f s (%.0f items/s)",
            target, self.items_embedded, self.seconds, self.items_per_second,
        )  # fmt: skip
        return True

    async def _index_pending(self) -> None:
        """Index the new collection before it is searched (in another process, as the
        active one is): it would otherwise be scanned exactly until the next build."""
        store = self.store
        if await store.unindexed_items(pending=True) < self.ctx.settings.index_after_items:
            return
        try:
            await store.build_index(pending=True)
        except StoreError as exc:
            log.warning("the re-embedded items are not indexed yet (%s): switching anyway", exc)

    async def _report_missing(self, space: str) -> None:
        """Items the active collection holds but the `items` topic no longer did (one not
        compacted, whose retention deleted them): the new space cannot have them."""
        missing = await self.store.count_items() - await self.store.count_items(pending=True)
        self.metrics.reembed_missing_items.set(max(0, missing))
        if missing > 0:
            log.error(
                "at least %d items are not in %s: the items topic no longer holds their "
                "content (is it compacted?); they leave the catalogue with the switch to %s",
                missing, self.ctx.settings.items_topic, space,
            )  # fmt: skip

    @property
    def items_per_second(self) -> float:
        return self.items_embedded / self.seconds if self.seconds > 0 else 0.0

    async def reembed(self, space: str) -> None:
        """Fill the pending collection of `space` from the `items` topic, up to its end."""
        await self.store.begin_item_space(space)
        self.items_embedded, self._started = 0, time.perf_counter()
        reader = ChangelogReader(
            self.ctx.settings,
            self.ctx.settings.items_topic,
            lambda records: self._embed(records, space),
        )
        await reader.start()
        try:
            await reader.assign({p: 0 for p in await reader.partitions()})
            await reader.catch_up(timeout_s=24 * 3600.0)
        finally:
            await reader.stop()
            self.seconds = time.perf_counter() - self._started

    async def _embed(self, records: Sequence[RawMessage], space: str) -> None:
        """One chunk of the items topic: latest content per item -> Triton -> the pending
        collection and `item-vectors`."""
        upserts = _latest_upserts(records)
        scratch = BatchResult()  # bad items were dead-lettered by the items path already
        upserts = await resolve_media(upserts, self.ctx.media, scratch)
        if not upserts:
            return
        contents = [ItemContent(item_text(op), op.image, op.audio) for _, op in upserts]
        vectors, errors, made_in = await self.ctx.triton.embed_items_in_space(contents)
        if made_in != space:
            raise SpaceMoved(f"Triton now serves {made_in}")
        items = [
            item_record(op, vector, space, self.ctx.rules)
            for (_, op), vector, error in zip(upserts, vectors, errors, strict=True)
            if error is None
        ]
        written = await self.store.upsert_reembedded(items)
        await self._publish(items)
        self.items_embedded += len(items)
        self.seconds = time.perf_counter() - self._started
        self.metrics.reembed_items.inc(written)
        self.metrics.reembed_items_per_second.set(self.items_per_second)

    async def _publish(self, items: Sequence[ItemRecord]) -> None:
        settings = self.ctx.settings
        headers = () if self.origin is None else ((ORIGIN_HEADER, self.origin),)
        messages = [
            OutMessage(
                settings.item_vectors_topic, i.item_id.encode(), encode_item(i), headers=headers
            )
            for i in items
        ]
        await self.output.publish(messages, [], settings.items_dlq_topic)
        for message in messages:
            size = len(message.key) + len(message.value or b"")
            self.metrics.changelog_bytes.labels(message.topic).inc(size)

    def _check_user_model(self, versions: ServedVersions) -> None:
        fits = versions.user_model_fits
        if not fits and self._user_model_fits is not False:
            log.error(
                "%s was trained on item space %s, but Triton serves %s: retrain and publish "
                "it for this item space (answers use it as it is meanwhile)",
                versions.user_model, versions.user_trained_for, versions.item_space,
            )  # fmt: skip
        self.metrics.user_model_fits.set(1 if fits else 0)
        self._user_model_fits = fits


def _latest_upserts(records: Sequence[RawMessage]) -> list[tuple[RawMessage, ItemUpsert]]:
    """The last record per item in offset order; deleted and invalid items drop out."""
    latest: dict[str, tuple[RawMessage, ItemUpsert | ItemDelete]] = {}
    for msg in records:
        try:
            op = parse_item(msg.key, msg.value, received_at=msg.timestamp)
        except InvalidMessage:
            continue  # dead-lettered by the items path when it arrived
        latest.pop(op.item_id, None)
        latest[op.item_id] = (msg, op)
    return [(msg, op) for msg, op in latest.values() if isinstance(op, ItemUpsert)]
