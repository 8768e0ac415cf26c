"""The embedded store's write-through item cache: point id -> item with its vector, least
recently used first, bounded. Exact because the embedded store is its collection's only
writer.

Entries are tuples of plain values (`CachedItem`), not `ScoredItem`s: Python's cyclic GC
stops tracking such a tuple the first time it looks at it, while it walks every dataclass
in each full collection, holding the GIL. At 100k cached items a full collection took
~90 ms and came once per ~1,000 searches; the cache is the bulk of a worker's heap, and
it churns with the catalogue, so freezing it at start (GC_THRESHOLD) does not keep it out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from worker.rules import DEFAULT_RULES, ItemRules
from worker.store.base import ScoredItem
from worker.store.payload import scored_item

# (item_id, category, tags, created_at, popularity, vector, rules): a plain tuple, since
# the GC untracks only exact tuples (not a NamedTuple's). An ndarray is not tracked; rules
# None stands for DEFAULT_RULES (an object in it would keep the tuple tracked).
CachedItem = tuple[
    str, str | None, tuple[str, ...], float, float, np.ndarray | None, ItemRules | None
]


def cached(item: ScoredItem) -> CachedItem:
    rules = None if item.rules == DEFAULT_RULES else item.rules
    return (
        item.item_id,
        item.category,
        tuple(item.tags),
        item.created_at,
        item.popularity,
        item.vector,
        rules,
    )


def scored(item: CachedItem, score: float, *, keep_vector: bool = True) -> ScoredItem:
    """The cached item as a search hit with `score` (its vector only with `keep_vector`)."""
    item_id, category, tags, created_at, popularity, vector, rules = item
    return ScoredItem(
        item_id,
        score,
        category,
        tags,
        created_at,
        popularity,
        vector if keep_vector else None,
        DEFAULT_RULES if rules is None else rules,
    )


class ItemCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, CachedItem] = OrderedDict()
        # The cache holds the whole collection: its warm-up read it all (`warm_cache`), and
        # nothing was evicted since.
        self.complete = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.size

    def put(self, point: int, item: CachedItem) -> None:
        if self.size <= 0:
            return
        self._items[point] = item
        self._items.move_to_end(point)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
            self.complete = False

    def entries(self) -> list[tuple[int, CachedItem]]:
        return list(self._items.items())

    def discard(self, point: int) -> None:
        self._items.pop(point, None)

    def lookup(self, points: Sequence[int]) -> tuple[dict[int, CachedItem], list[int]]:
        """-> (the cached items, the points not cached)."""
        found: dict[int, CachedItem] = {}
        missing: list[int] = []
        for point in points:
            cached = self._items.get(point)
            if cached is None:
                missing.append(point)
            else:
                self._items.move_to_end(point)
                found[point] = cached
        return found, missing


# (offset, limit) -> a page of records (point id, payload, vector) and the next offset
Pages = Callable[[Any, int], Awaitable[tuple[list[tuple[int, Any, np.ndarray | None]], Any]]]


async def warm_cache(size: int, scroll: Pages, page: int = 1000) -> ItemCache:
    """A cache of `size` filled from a collection (`scroll` pages through it, with the
    scored fields and vectors): otherwise the first searches after a restart each pay the
    engine's slow conversion of payloads and vectors (the start pays it once instead, ~20
    µs per item)."""
    cache = ItemCache(size)
    offset = None
    while not cache.full:
        records, offset = await scroll(offset, min(page, cache.size - len(cache)))
        for point, payload, vector in records:
            if payload:
                cache.put(point, cached(scored_item(payload, 0.0, vector)))
        if offset is None:
            cache.complete = True
            break
    return cache
