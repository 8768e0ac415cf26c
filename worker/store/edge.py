"""VectorStore on Qdrant Edge: Qdrant's engine in process, one shard directory per collection.

Edge is synchronous, so every shard call runs on one dedicated thread: the event loop never
blocks on search or disk, and the single thread serialises access to the shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    MatchAny,
    PayloadSchemaType,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from worker.store.base import (
    ItemRecord,
    ScoredItem,
    SearchRequest,
    StoreError,
    StoreUnavailable,
    UserState,
)
from worker.store.base import point_id as derive_point_id
from worker.store.edge_query import PointId, edge_query
from worker.store.payload import (
    CATEGORY_FIELD,
    CREATED_AT_FIELD,
    PARTITION_FIELD,
    SCORED_FIELDS,
    VECTOR_NAME,
    item_payload,
    item_point_ids,
    named_vector,
    query_limit,
    scored_item,
    user_payload,
    user_point_ids,
    user_state,
    vector_list,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

# Written by EdgeShard.create; its presence means the directory holds a shard to load.
_CONFIG_FILE = "edge_config.json"


class EdgeVectorStore:
    """Embedded store. `flush_interval_s` bounds how much WAL a restart must replay;
    `item_cache_size` items (vector and ranking fields) are kept in memory (0: no cache).

    Embedded means this process is the store's only writer, so a write-through item cache
    stays exact. It matters: the engine's Python binding converts payloads and vectors value
    by value (measured: a batch of 34 searches of 50 hits takes 4.4 ms for ids and scores,
    25 ms with the payload fields), so searches ask the engine for ids and scores only.
    """

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        items_collection: str = "items",
        users_collection: str = "users",
        hnsw_ef: int = 128,
        flush_interval_s: float | None = 30.0,
        item_cache_size: int = 100_000,
    ) -> None:
        self.dim = dim
        self._path = Path(path)
        self._items_name = items_collection
        self._users_name = users_collection
        self._hnsw_ef = hnsw_ef
        self._flush_interval_s = flush_interval_s
        self._executor: ThreadPoolExecutor | None = None
        self._items: EdgeShard | None = None
        self._users: EdgeShard | None = None
        self._flusher: asyncio.Task[None] | None = None
        # point id -> the item with its vector (score 0), least recently used first.
        self._item_cache: OrderedDict[int, ScoredItem] = OrderedDict()
        self._item_cache_size = item_cache_size

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store")
        try:
            self._items = await self._run(self._open_shard, self._items_name, True)
            self._users = await self._run(self._open_shard, self._users_name, False)
        except StoreError:
            await self.close()
            raise
        if self._flush_interval_s:
            self._flusher = asyncio.create_task(self._flush_periodically(self._flush_interval_s))
        await self._warm_item_cache()

    async def _warm_item_cache(self, page: int = 1000) -> None:
        """Fill the item cache from the collection at start, up to its size: otherwise the
        first searches after a restart each pay the engine's slow conversion of payloads and
        vectors (the start pays it once instead, ~20 µs per item)."""
        shard, _ = self._shards()
        offset = None
        while len(self._item_cache) < self._item_cache_size:
            request = ScrollRequest(
                offset=offset,
                limit=min(page, self._item_cache_size - len(self._item_cache)),
                with_payload=SCORED_FIELDS,
                with_vector=[VECTOR_NAME],
            )
            records, offset = await self._run(shard.scroll, request)
            for record in records:
                if record.payload:
                    item = scored_item(record.payload, 0.0, named_vector(record.vector))
                    self._cache_item(int(record.id), item)
            if offset is None:
                break

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await self._run(self._close_shards)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def flush(self) -> None:
        """Persist segments now (the WAL already holds every acknowledged update)."""
        await self._run(self._flush_shards)

    async def optimize(self) -> bool:
        """Build HNSW / vacuum segments. Edge never does this on its own; it blocks the store's
        thread while it runs, so call it at a quiet moment. True if anything was optimised."""
        items, users = self._shards()
        optimized_items = await self._run(items.optimize)
        optimized_users = await self._run(users.optimize)
        return optimized_items or optimized_users

    # -- items -------------------------------------------------------------------------------

    async def upsert_items(self, items: Sequence[ItemRecord]) -> None:
        if not items:
            return
        points = [
            Point(
                derive_point_id("item", item.item_id),
                {VECTOR_NAME: vector_list(item.vector)},
                item_payload(item),
            )
            for item in items
        ]
        shard, _ = self._shards()
        await self._run(shard.update, UpdateOperation.upsert_points(points))
        for item, point in zip(items, points, strict=True):
            vector = np.asarray(item.vector, dtype=np.float32)
            self._cache_item(int(point.id), scored_item(item_payload(item), 0.0, vector))

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        shard, _ = self._shards()
        ids = list(item_point_ids(item_ids))
        await self._run(shard.update, UpdateOperation.delete_points(list[PointId](ids)))
        for point in ids:
            self._item_cache.pop(point, None)

    async def get_item_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        items = await self.get_items(item_ids)
        return {k: v.vector for k, v in items.items() if v.vector is not None}

    async def get_items(self, item_ids: Sequence[str]) -> dict[str, ScoredItem]:
        if not item_ids:
            return {}
        found = await self._cached_items(list(item_point_ids(item_ids)))
        return {item.item_id: item for item in found.values()}

    async def _cached_items(self, points: Sequence[int]) -> dict[int, ScoredItem]:
        """point id -> item (with its vector), from the cache or, for the rest, one retrieve
        call that fills it. Points that do not exist are left out."""
        cache = self._item_cache
        items: dict[int, ScoredItem] = {}
        missing: list[PointId] = []
        for point in points:
            cached = cache.get(point)
            if cached is None:
                missing.append(point)
            else:
                cache.move_to_end(point)
                items[point] = cached
        if missing:
            shard, _ = self._shards()
            records = await self._run(
                shard.retrieve, missing, with_payload=SCORED_FIELDS, with_vector=[VECTOR_NAME]
            )
            for record in records:
                if record.payload:
                    item = scored_item(record.payload, 0.0, named_vector(record.vector))
                    items[int(record.id)] = item
                    self._cache_item(int(record.id), item)
        return items

    def _cache_item(self, point: int, item: ScoredItem) -> None:
        if self._item_cache_size <= 0:
            return
        self._item_cache[point] = item
        self._item_cache.move_to_end(point)
        while len(self._item_cache) > self._item_cache_size:
            self._item_cache.popitem(last=False)

    async def count_items(self) -> int:
        shard, _ = self._shards()
        return await self._run(shard.count, CountRequest(exact=True))

    async def probe(self) -> None:
        # Embedded: the store is up while it is open; an engine error here is not the data's.
        try:
            await self._run(self._shards()[0].count, CountRequest(exact=False))
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def search_items(self, requests: Sequence[SearchRequest]) -> list[list[ScoredItem]]:
        if not requests:
            return []
        shard, _ = self._shards()
        batch = QueryBatchRequest([edge_query(r, self._hnsw_ef) for r in requests])
        answers = await self._run(shard.query_batch, batch)
        # Ids and scores from the engine; the rest from the item cache.
        scored = [[(hit.id, hit.score) for hit in hits] for hits in answers]
        items = await self._cached_items(
            sorted({int(point) for hits in scored for point, _ in hits})
        )
        return [
            [
                found.with_score(score, keep_vector=request.with_vectors)
                for point, score in hits
                if (found := items.get(int(point))) is not None
            ][: request.limit]
            for request, hits in zip(requests, scored, strict=True)
        ]

    # -- users -------------------------------------------------------------------------------

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        if not user_ids:
            return {}
        _, shard = self._shards()
        records = await self._run(
            shard.retrieve,
            list(user_point_ids(user_ids)),
            with_payload=True,
            with_vector=[VECTOR_NAME],
        )
        states = (user_state(r.payload or {}, named_vector(r.vector)) for r in records)
        return {state.user_id: state for state in states}

    async def upsert_users(self, users: Sequence[UserState]) -> None:
        if not users:
            return
        # A user without a vector is a point with no named vectors (an empty map): Edge, like
        # the server, stores it, and an upsert replaces any vector the point had before.
        points = [
            Point(
                derive_point_id("user", user.user_id),
                {} if user.vector is None else {VECTOR_NAME: vector_list(user.vector)},
                user_payload(user),
            )
            for user in users
        ]
        _, shard = self._shards()
        await self._run(shard.update, UpdateOperation.upsert_points(points))

    async def search_users(
        self, vectors: Sequence[np.ndarray], limit: int, partitions: Sequence[int] | None = None
    ) -> list[list[tuple[str, float]]]:
        if not vectors:
            return []
        _, shard = self._shards()
        only = (
            None
            if partitions is None
            else Filter(must=[FieldCondition(PARTITION_FIELD, match=MatchAny(list(partitions)))])
        )
        batch = QueryBatchRequest(
            [
                QueryRequest(
                    limit=query_limit(limit),
                    query=Query.Nearest(vector_list(vector), using=VECTOR_NAME),
                    filter=only,
                    params=SearchParams(hnsw_ef=self._hnsw_ef),
                    with_payload=["user_id"],
                    with_vector=False,
                )
                for vector in vectors
            ]
        )
        answers = await self._run(shard.query_batch, batch)
        return [
            [(str((hit.payload or {})["user_id"]), float(hit.score)) for hit in hits][:limit]
            for hits in answers
        ]

    # -- internals (the _open/_close/_flush helpers run on the store thread) -------------------

    def _config(self) -> EdgeConfig:
        return EdgeConfig(
            vectors={VECTOR_NAME: EdgeVectorParams(size=self.dim, distance=Distance.Cosine)}
        )

    def _open_shard(self, name: str, indexed: bool) -> EdgeShard:
        directory = self._path / name
        if (directory / _CONFIG_FILE).exists():
            # Passing the config makes Edge check it (e.g. the dimension) against the data.
            shard = EdgeShard.load(str(directory), self._config())
        else:
            directory.mkdir(parents=True, exist_ok=True)
            shard = EdgeShard.create(str(directory), self._config())
        if indexed:
            existing = shard.info().payload_schema
            for field, schema in (
                (CATEGORY_FIELD, PayloadSchemaType.Keyword),
                (CREATED_AT_FIELD, PayloadSchemaType.Float),
            ):
                if field not in existing:
                    shard.update(UpdateOperation.create_field_index(field, schema))
        return shard

    def _flush_shards(self) -> None:
        for shard in (self._items, self._users):
            if shard is not None:
                shard.flush()

    def _close_shards(self) -> None:
        shards = [s for s in (self._items, self._users) if s is not None]
        self._items = self._users = None
        for shard in shards:
            shard.flush()
            shard.close()

    async def _flush_periodically(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except StoreError:
                # Retried next tick; the WAL still holds every acknowledged update.
                log.warning("periodic edge flush failed", exc_info=True)

    def _shards(self) -> tuple[EdgeShard, EdgeShard]:
        if self._items is None or self._users is None:
            raise StoreUnavailable("EdgeVectorStore is not open")
        return self._items, self._users

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        if self._executor is None:
            raise StoreUnavailable("EdgeVectorStore is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )
        except Exception as exc:  # Edge raises bare Exception for every engine error
            raise StoreError(f"qdrant edge: {exc}") from exc
