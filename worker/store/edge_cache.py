"""The embedded store's write-through item cache: point id -> item with its vector, least
recently used first, bounded. Exact because the embedded store is its collection's only
writer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from worker.store.base import ScoredItem


class ItemCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, ScoredItem] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.size

    def put(self, point: int, item: ScoredItem) -> None:
        if self.size <= 0:
            return
        self._items[point] = item
        self._items.move_to_end(point)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def discard(self, point: int) -> None:
        self._items.pop(point, None)

    def lookup(self, points: Sequence[int]) -> tuple[dict[int, ScoredItem], list[int]]:
        """-> (the cached items, the points not cached)."""
        found: dict[int, ScoredItem] = {}
        missing: list[int] = []
        for point in points:
            cached = self._items.get(point)
            if cached is None:
                missing.append(point)
            else:
                self._items.move_to_end(point)
                found[point] = cached
        return found, missing
