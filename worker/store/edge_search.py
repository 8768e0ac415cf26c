"""The embedded store's item reads: items by id (from the item cache) and nearest-item
searches, which scan the items in this process while the catalogue is small
(exact_index.py) and ask the engine's index beyond."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from qdrant_edge import EdgeShard

from worker.store import edge_cache
from worker.store.base import Scored, ScoredItem, SearchRequest
from worker.store.edge_cache import CachedItem, ItemCache, cached
from worker.store.edge_items import Items, SearchParams
from worker.store.edge_query import queries_per_call
from worker.store.exact_index import ExactIndex
from worker.store.payload import SCORED_FIELDS, item_point_ids, scored_item

T = TypeVar("T")


class ItemReads:
    """Mixed into EdgeVectorStore, whose state and helpers it uses."""

    hnsw_ef: int
    oversampling: float
    _item_cache: ItemCache
    _exact: ExactIndex | None
    _unindexed_bound: int
    _last_searches: deque[Sequence[SearchRequest]]

    if TYPE_CHECKING:

        def _shards(self) -> tuple[Items, EdgeShard]: ...
        async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...
        def _reading(self, shard: Items) -> AbstractContextManager[None]: ...

    async def get_item_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        items = await self.get_items(item_ids)
        return {k: v.vector for k, v in items.items() if v.vector is not None}

    async def get_items(self, item_ids: Sequence[str]) -> dict[str, ScoredItem]:
        if not item_ids:
            return {}
        points = list(item_point_ids(item_ids))
        # The in-process scan's items where it has them (shared, like its hits' items).
        shared = {} if self._exact is None else self._exact.items(points)
        out = {item.item_id: item for item in shared.values()}
        if len(shared) < len(points):
            found = await self._cached_items([p for p in points if p not in shared])
            out.update((item[0], edge_cache.scored(item, 0.0)) for item in found.values())
        return out

    async def _cached_items(self, points: Sequence[int]) -> dict[int, CachedItem]:
        """point id -> item (with its vector), from the cache or, for the rest, one retrieve
        call that fills it. Points that do not exist are left out."""
        items, missing = self._item_cache.lookup(points)
        if missing:
            shard, _ = self._shards()
            records = await self._run(shard.retrieve, missing, SCORED_FIELDS, True)
            for point, payload, vector in records:
                if payload:
                    item = cached(scored_item(payload, 0.0, vector))
                    items[point] = item
                    self._item_cache.put(point, item)
        return items

    async def search_items(self, requests: Sequence[SearchRequest]) -> list[list[ScoredItem]]:
        if not requests:
            return []
        self._last_searches.append(requests)  # an indexed copy answers them before its swap
        if self._exact is not None:
            scored = self._exact.search(requests)
        else:
            scored = await self._search_engine(requests)
        # Ids and scores from the search; the rest from the item cache.
        items = await self._cached_items(sorted({point for hits in scored for point, _ in hits}))
        return [
            [
                edge_cache.scored(found, score, keep_vector=request.with_vectors)
                for point, score in hits
                if (found := items.get(point)) is not None
            ][: request.limit]
            for request, hits in zip(requests, scored, strict=True)
        ]

    async def search_candidates(self, requests: Sequence[SearchRequest]) -> list[Scored]:
        if self._exact is None or not requests:
            return [Scored.of(hits) for hits in await self.search_items(requests)]
        self._last_searches.append(requests)
        found = self._exact.candidates(requests)
        return [  # limit 0 was asked as 1, like the engine's
            hits if len(hits.items) <= r.limit else Scored([], [])
            for hits, r in zip(found, requests, strict=True)
        ]

    async def _search_engine(
        self, requests: Sequence[SearchRequest]
    ) -> list[list[tuple[int, float]]]:
        shard, _ = self._shards()
        params = SearchParams(self.hnsw_ef, self.oversampling)
        # Short calls while many items are outside the index (searched exactly): the GIL is
        # free between them. Under INDEX_AFTER_ITEMS, as in steady state, it is one call.
        step = queries_per_call(self._unindexed_bound)
        scored: list[list[tuple[int, float]]] = []
        with self._reading(shard):
            for start in range(0, len(requests), step):
                scored += await self._run(shard.search, requests[start : start + step], params)
        return scored
