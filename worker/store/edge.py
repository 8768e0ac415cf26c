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
    HasIdCondition,
    MatchAny,
    PayloadSchemaType,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    RangeFloat,
    SearchParams,
    UpdateOperation,
)

from worker.store.base import ItemRecord, ScoredItem, SearchRequest, StoreError, UserState
from worker.store.base import point_id as derive_point_id
from worker.store.payload import (
    CATEGORY_FIELD,
    CREATED_AT_FIELD,
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
    `vector_cache_size` item vectors are kept in memory (0 turns the cache off)."""

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        items_collection: str = "items",
        users_collection: str = "users",
        hnsw_ef: int = 128,
        flush_interval_s: float | None = 30.0,
        vector_cache_size: int = 100_000,
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
        self._vector_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vector_cache_size = vector_cache_size

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
        for item in items:
            self._cache_vector(item.item_id, np.asarray(item.vector, dtype=np.float32))

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        shard, _ = self._shards()
        ids = list(item_point_ids(item_ids))
        await self._run(shard.update, UpdateOperation.delete_points(ids))
        for item_id in item_ids:
            self._vector_cache.pop(item_id, None)

    async def get_item_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not item_ids:
            return {}
        cache = self._vector_cache
        vectors: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for item_id in item_ids:
            cached = cache.get(item_id)
            if cached is None:
                missing.append(item_id)
            else:
                cache.move_to_end(item_id)
                vectors[item_id] = cached
        if missing:
            shard, _ = self._shards()
            by_point = item_point_ids(missing)
            records = await self._run(
                shard.retrieve, list(by_point), with_payload=False, with_vector=[VECTOR_NAME]
            )
            for record in records:
                vector = named_vector(record.vector)
                if vector is not None:
                    vectors[by_point[str(record.id)]] = vector
                    self._cache_vector(by_point[str(record.id)], vector)
        return vectors

    def _cache_vector(self, item_id: str, vector: np.ndarray) -> None:
        # Embedded means this process is the store's only writer, so a write-through cache of
        # item vectors stays exact; it spares the per-float conversion of `retrieve`.
        if self._vector_cache_size <= 0:
            return
        self._vector_cache[item_id] = vector
        self._vector_cache.move_to_end(item_id)
        while len(self._vector_cache) > self._vector_cache_size:
            self._vector_cache.popitem(last=False)

    async def get_items(self, item_ids: Sequence[str]) -> dict[str, ScoredItem]:
        if not item_ids:
            return {}
        shard, _ = self._shards()
        records = await self._run(
            shard.retrieve,
            list(item_point_ids(item_ids)),
            with_payload=SCORED_FIELDS,
            with_vector=False,
        )
        # Vectors through the cache: converting them from the engine is the slow part.
        payloads = {str(r.payload["item_id"]): r.payload for r in records if r.payload}
        vectors = await self.get_item_vectors(list(payloads))
        return {
            item_id: scored_item(payload, 0.0, vectors.get(item_id))
            for item_id, payload in payloads.items()
        }

    async def count_items(self) -> int:
        shard, _ = self._shards()
        return await self._run(shard.count, CountRequest(exact=True))

    async def search_items(self, requests: Sequence[SearchRequest]) -> list[list[ScoredItem]]:
        if not requests:
            return []
        shard, _ = self._shards()
        batch = QueryBatchRequest([self._query(request) for request in requests])
        answers = await self._run(shard.query_batch, batch)
        # Hits come without vectors; those asked for are filled from the vector cache.
        wanted = {
            str((hit.payload or {})["item_id"])
            for request, hits in zip(requests, answers, strict=True)
            if request.with_vectors
            for hit in hits
        }
        vectors = await self.get_item_vectors(sorted(wanted)) if wanted else {}
        return [
            [
                scored_item(payload, hit.score, vectors.get(str(payload["item_id"])))
                if request.with_vectors
                else scored_item(payload, hit.score)
                for hit in hits
                for payload in (hit.payload or {},)
            ][: request.limit]
            for request, hits in zip(requests, answers, strict=True)
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
        self, vectors: Sequence[np.ndarray], limit: int
    ) -> list[list[tuple[str, float]]]:
        if not vectors:
            return []
        _, shard = self._shards()
        batch = QueryBatchRequest(
            [
                QueryRequest(
                    limit=query_limit(limit),
                    query=Query.Nearest(vector_list(vector), using=VECTOR_NAME),
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

    def _query(self, request: SearchRequest) -> QueryRequest:
        must: list[FieldCondition] = []
        if request.categories is not None:
            must.append(FieldCondition(CATEGORY_FIELD, match=MatchAny(list(request.categories))))
        if request.created_after is not None:
            must.append(
                FieldCondition(CREATED_AT_FIELD, range=RangeFloat(gte=request.created_after))
            )
        excluded = {derive_point_id("item", item_id) for item_id in request.exclude_item_ids}
        must_not = [HasIdCondition(excluded)] if excluded else None
        return QueryRequest(
            limit=query_limit(request.limit),
            query=Query.Nearest(vector_list(request.vector), using=VECTOR_NAME),
            filter=Filter(must=must or None, must_not=must_not) if must or must_not else None,
            params=SearchParams(hnsw_ef=self._hnsw_ef),
            with_payload=SCORED_FIELDS,
            with_vector=False,
        )

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
            raise StoreError("EdgeVectorStore is not open")
        return self._items, self._users

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        if self._executor is None:
            raise StoreError("EdgeVectorStore is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )
        except Exception as exc:  # Edge raises bare Exception for every engine error
            raise StoreError(f"qdrant edge: {exc}") from exc
