"""Exact nearest-item search in the worker's memory, for a catalogue small enough to scan:
the embedded store's items as arrays (unit vectors and the filtered fields), searched with
one matrix product per batch.

Why: below ~10,000 items an exact scan is what a search costs anyway, and the engine's
binding pays per query (the request objects, the filter, the answer converted hit by
hit): at 1,682 items a batch of 27 searches took ~7 CPU ms in the engine, ~14% of the
worker's CPU at 300 events/s, against ~2 ms here (README "Catalogue size"). Past
`limit` items the store drops this index and searches the engine's HNSW index instead.

Exact because the embedded store is its collection's only writer: every upsert, delete
and rules change made through the store is applied here too (see edge.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from worker.rules import DEFAULT_RULES, ItemRules
from worker.store.base import Scored, ScoredItem, SearchRequest, point_ids
from worker.store.edge_cache import CachedItem, ItemCache, scored
from worker.store.payload import query_limit

# Score cells per matrix product: a batch's queries go in chunks of rows so the [queries,
# items] scores stay ~4 MB whatever the batch size.
CELLS_PER_CHUNK = 1_000_000

# Filters a request narrows to: (categories, created_after, available_at).
FilterKey = tuple[tuple[str, ...] | None, float | None, float | None]


def one_blas_thread() -> None:
    """numpy's products on one BLAS thread, for a process that searches here (the worker's,
    its benchmarks): they are small (a batch's searches against at most
    EXACT_SEARCH_MAX_ITEMS items), and a pool's threads spin between calls: with two, a
    search at 2,000 items cost 0.56 CPU ms against 0.30."""
    threadpool_limits(1, user_api="blas")


class ExactIndex:
    """Rows of (point, unit vector, category, created_at, blocked_from), appended and
    removed by swapping in the last row, and each row's item as hits share it (`candidates`:
    one object per item rather than one per hit)."""

    def __init__(self, dim: int, limit: int) -> None:
        self.dim = dim
        self.limit = limit
        self._rows: dict[int, int] = {}  # point -> row
        self._size = 0
        self._points = np.zeros(0, dtype=np.uint64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._categories = np.zeros(0, dtype=np.int32)  # -1: no category
        self._created = np.zeros(0, dtype=np.float64)
        self._blocked = np.zeros(0, dtype=np.float64)  # +inf: never blocked
        self._codes: dict[str, int] = {}
        # Per row. Dataclasses, unlike the item cache's tuples, stay tracked by the GC: at
        # most `limit` of them, 10,000 added ~2 ms to a full collection (9 → 11 ms).
        self._items: list[ScoredItem] = []

    def __len__(self) -> int:
        return self._size

    def __contains__(self, point: int) -> bool:
        return point in self._rows

    def put(self, point: int, item: CachedItem) -> bool:
        """Add or replace an item. False (nothing changed) if it would be one over the limit,
        or has no vector (never a search hit)."""
        _, category, _, created_at, _, vector, rules = item
        row = self._rows.get(point)
        if vector is None:
            if row is not None:
                self.remove(point)
            return True
        if row is None:
            if self._size >= self.limit:
                return False
            row = self._append(point)
        self._items[row] = scored(item, 0.0)
        norm = float(np.linalg.norm(vector))
        self._vectors[row] = vector / max(norm, 1e-12)
        self._categories[row] = -1 if category is None else self._code(category)
        self._created[row] = created_at
        blocked = None if rules is None else rules.blocked_from
        self._blocked[row] = np.inf if blocked is None else blocked
        return True

    def remove(self, point: int) -> None:
        row = self._rows.pop(point, None)
        if row is None:
            return
        last = self._size - 1
        if row != last:
            moved = int(self._points[last])
            for column in self._columns():
                column[row] = column[last]
            self._items[row] = self._items[last]
            self._rows[moved] = row
        self._items.pop()
        self._size = last

    def set_rules(self, point: int, rules: ItemRules) -> None:
        """A rules change: the rules in effect (availability, boost, pin)."""
        row = self._rows.get(point)
        if row is not None:
            blocked = rules.blocked_from
            self._blocked[row] = np.inf if blocked is None else blocked
            # The default as the singleton, as the cache gives it (filters test identity).
            in_effect = DEFAULT_RULES if rules == DEFAULT_RULES else rules
            self._items[row] = dataclasses.replace(self._items[row], rules=in_effect)

    def items(self, points: Sequence[int]) -> dict[int, ScoredItem]:
        """The items of those of `points` held here (score 0, vector included)."""
        rows, items = self._rows, self._items
        return {point: items[row] for point in points if (row := rows.get(point)) is not None}

    def search(self, requests: Sequence[SearchRequest]) -> list[list[tuple[int, float]]]:
        """(point, cosine) of each request's nearest items within its filters, best first,
        at most `limit` (as the engine answers: an empty request gets one hit to trim)."""
        points = self._points
        return [
            list(zip(points[rows].tolist(), values, strict=True))
            for rows, values in self._search_rows(requests)
        ]

    def candidates(self, requests: Sequence[SearchRequest]) -> list[Scored]:
        """`search`'s answers with each hit's item (shared, vector included) and cosine."""
        items = self._items
        return [
            Scored([items[row] for row in rows], values)
            for rows, values in self._search_rows(requests)
        ]

    def _search_rows(
        self, requests: Sequence[SearchRequest]
    ) -> list[tuple[list[int], list[float]]]:
        if not self._size:
            return [([], []) for _ in requests]
        step = max(1, CELLS_PER_CHUNK // self._size)
        masks: dict[FilterKey, np.ndarray | None] = {}
        out: list[tuple[list[int], list[float]]] = []
        for start in range(0, len(requests), step):
            out += self._search_chunk(requests[start : start + step], masks)
        return out

    def _search_chunk(
        self, requests: Sequence[SearchRequest], masks: dict[FilterKey, np.ndarray | None]
    ) -> list[tuple[list[int], list[float]]]:
        size = self._size
        queries = np.array([r.vector for r in requests], dtype=np.float32)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        scores = queries @ self._vectors[:size].T
        for row, request in enumerate(requests):
            categories = None if request.categories is None else tuple(request.categories)
            key = (categories, request.created_after, request.available_at)
            if key not in masks:
                masks[key] = self._ruled_out(*key)
            ruled_out = masks[key]
            if ruled_out is not None:
                scores[row, ruled_out] = -np.inf
            rows = self._rows
            excluded = [rows[p] for p in point_ids("item", request.exclude_item_ids) if p in rows]
            scores[row, excluded] = -np.inf
        return self._best(scores, [query_limit(r.limit) for r in requests])

    def _ruled_out(
        self, categories: tuple[str, ...] | None, created_after: float | None, at: float | None
    ) -> np.ndarray | None:
        """The rows a filter rules out, as a boolean mask (None: none)."""
        size = self._size
        out = np.zeros(size, dtype=bool)
        if categories is not None:
            codes = [self._codes[c] for c in categories if c in self._codes]
            out |= ~np.isin(self._categories[:size], codes)
        if created_after is not None:
            out |= self._created[:size] < created_after
        if at is not None:
            out |= self._blocked[:size] <= at
        return out if out.any() else None

    def _best(
        self, scores: np.ndarray, limits: Sequence[int]
    ) -> list[tuple[list[int], list[float]]]:
        """Each query's best `limits[q]` finite scores, best first, as (rows, scores)."""
        k = min(max(limits), scores.shape[1])
        if k < scores.shape[1]:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(k), scores.shape)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        rows = top.tolist()
        values = top_scores.tolist()
        finite = np.isfinite(top_scores).sum(axis=1).tolist()
        return [
            (rows[q][:n], values[q][:n])
            for q, n in enumerate(min(f, limit) for f, limit in zip(finite, limits, strict=True))
        ]

    def _append(self, point: int) -> int:
        if self._size == len(self._points):
            capacity = max(64, 2 * self._size)
            grown = [_grown(column, capacity) for column in self._columns()]
            self._points, self._vectors, self._categories, self._created, self._blocked = grown
        row = self._size
        self._points[row] = point
        self._rows[point] = row
        self._items.append(_PLACEHOLDER)
        self._size += 1
        return row

    def _columns(self) -> list[np.ndarray]:
        return [self._points, self._vectors, self._categories, self._created, self._blocked]

    def _code(self, category: str) -> int:
        code = self._codes.get(category)
        if code is None:
            code = self._codes[category] = len(self._codes)
        return code


_PLACEHOLDER = ScoredItem("", 0.0)  # a row's item until `put` sets it


def _grown(column: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros((capacity, *column.shape[1:]), dtype=column.dtype)
    out[: len(column)] = column
    return out


def exact_index_of(cache: ItemCache, dim: int, limit: int) -> ExactIndex | None:
    """The index of a warmed cache's items, if the cache holds the whole collection and that
    is at most `limit` items (else None: searches go to the engine)."""
    if not cache.complete or len(cache) > limit:
        return None
    index = ExactIndex(dim, limit)
    for point, item in cache.entries():
        index.put(point, item)
    return index
