"""Where candidates are gathered and filtered: the Qdrant request per user (the store
applies the exclusions and constraints to its hits), trending and co-visited items scored
against the user, and the merge that applies them to those extra candidates.

Pure functions; the one batched store call lives in `recommend.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.events import UserEvent
from worker.rules import DEFAULT_RULES
from worker.settings import Settings
from worker.store import Scored, ScoredItem, SearchRequest
from worker.vector_rows import stacked


@dataclass(frozen=True, slots=True)
class CandidateFilter:
    categories: tuple[str, ...] | None = None  # None: any category
    created_after: float | None = None  # None: any age
    # Unavailable and expired items are left out at this (wall clock) time; None: no check.
    available_at: float | None = None

    def narrowed(self, categories: Sequence[str] | None) -> CandidateFilter:
        """Only the categories also in `categories` (None: unchanged)."""
        if categories is None:
            return self
        kept = (
            tuple(categories)
            if self.categories is None
            else tuple(c for c in categories if c in self.categories)
        )
        return CandidateFilter(kept, self.created_after, self.available_at)

    def allows(self, item: ScoredItem) -> bool:
        if self.categories is not None and item.category not in self.categories:
            return False
        if self.created_after is not None and item.created_at < self.created_after:
            return False
        rules = item.rules  # the singleton default has nothing to check
        return (
            rules is DEFAULT_RULES
            or self.available_at is None
            or not rules.blocks(self.available_at)
        )


def candidate_filter(
    settings: Settings,
    events: Sequence[UserEvent],
    now: float,
    available_at: float | None = None,
) -> CandidateFilter:
    """The settings' constraints, narrowed by the latest event's `context` (if any), and
    the business rules' availability at `available_at` (the wall clock, not event time: an
    item expires for everyone at once)."""
    latest = max(events, key=lambda e: e.ts) if events else None
    categories = tuple(settings.recommend_categories) if settings.recommend_categories else None
    if latest is not None and latest.categories is not None:
        wanted = latest.categories
        categories = wanted if categories is None else tuple(c for c in wanted if c in categories)
    windows = [settings.freshness_window_s, latest.max_age_s if latest else None]
    window = min((w for w in windows if w is not None), default=None)
    return CandidateFilter(categories, None if window is None else now - window, available_at)


def search_request(
    vector: np.ndarray,
    seen: Sequence[str],
    *,
    k: int,
    constraints: CandidateFilter = CandidateFilter(),
) -> SearchRequest:
    """Ask the store for the k items nearest the query vector (with their vectors, for
    diversity), excluding everything already seen and honouring the constraints."""
    return SearchRequest(
        vector=vector,
        limit=k,
        exclude_item_ids=tuple(seen),
        categories=constraints.categories,
        created_after=constraints.created_after,
        available_at=constraints.available_at,
        with_vectors=True,
    )


def cosine_matrix(items: Sequence[ScoredItem], queries: Sequence[np.ndarray | None]) -> np.ndarray:
    """[queries, items] cosines, as the store would score items fetched by id (trending,
    co-visited): one product for the whole batch; 0 for an item without a vector or a
    missing query (a user with no usable history)."""
    scores = np.zeros((len(queries), len(items)))
    with_vectors = [i for i, item in enumerate(items) if item.vector is not None]
    asked = [row for row, query in enumerate(queries) if query is not None]
    if asked and with_vectors:
        vectors = stacked([items[i].vector for i in with_vectors])  # type: ignore[misc]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        matrix = stacked([queries[row] for row in asked])  # type: ignore[misc]
        # einsum keeps this small product off BLAS's thread pool (see ranking.mmr).
        scores[np.ix_(asked, with_vectors)] = np.einsum("bd,nd->bn", matrix, vectors)
    return scores


def scored_against(
    items: Sequence[ScoredItem], queries: Sequence[np.ndarray | None]
) -> list[Scored]:
    """The same items for every query, scored by `cosine_matrix`."""
    shared = list(items)
    if not shared:
        return [Scored([], []) for _ in queries]
    return [Scored(shared, row) for row in cosine_matrix(shared, queries).tolist()]


def scored_per_query(
    ids_per_query: Sequence[Sequence[str]],
    fetched: Mapping[str, ScoredItem],
    queries: Sequence[np.ndarray | None],
) -> list[Scored]:
    """Different items for every query (co-visited items), scored like `scored_against`:
    one row-wise product over every (query, item) pair of the batch rather than a product
    per query (or a [queries, all items] one, mostly wasted). Each distinct item's vector
    and each query's are gathered once, then read per pair: users share their co-visited
    items."""
    out = [Scored([], []) for _ in queries]
    column: dict[str, int] = {}
    distinct: list[ScoredItem] = []
    owners: list[int] = []
    columns: list[int] = []
    for row, ids in enumerate(ids_per_query):
        items = out[row].items
        for item_id in ids:
            item = fetched.get(item_id)
            if item is None:
                continue
            col = column.get(item_id)
            if col is None:
                col = column[item_id] = len(distinct)
                distinct.append(item)
            items.append(item)
            owners.append(row)
            columns.append(col)
    scores = _pair_cosines(distinct, queries, owners, columns)
    start = 0
    for scored in out:
        end = start + len(scored.items)
        scored.scores.extend(scores[start:end])
        start = end
    return out


def _pair_cosines(
    items: Sequence[ScoredItem],
    queries: Sequence[np.ndarray | None],
    owners: list[int],
    columns: list[int],
) -> list[float]:
    """Cosine of query owners[p] and item columns[p] for each pair p; 0 where either has
    no vector."""
    scores = np.zeros(len(owners))
    with_vectors = [i for i, item in enumerate(items) if item.vector is not None]
    asked = [row for row, query in enumerate(queries) if query is not None]
    if not with_vectors or not asked:
        return scores.tolist()
    vectors = np.zeros((len(items), len(queries[asked[0]])), dtype=np.float32)  # type: ignore[arg-type]
    found = stacked([items[i].vector for i in with_vectors])  # type: ignore[misc]
    vectors[with_vectors] = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    matrix = np.zeros((len(queries), vectors.shape[1]), dtype=np.float32)
    matrix[asked] = stacked([queries[row] for row in asked])  # type: ignore[misc]
    # einsum keeps this small product off BLAS's thread pool (see ranking.mmr).
    scores[:] = np.einsum("pd,pd->p", vectors[columns], matrix[owners])
    return scores.tolist()


def merge_candidates(
    found: Scored,
    extra: Scored,
    seen: Collection[str],
    constraints: CandidateFilter,
) -> Scored:
    """Search hits as the store returned them, then the extra candidates that are not seen,
    not among them and not ruled out by the constraints. The store applied the exclusions
    and constraints to its hits (the store contract tests hold every backend to that), so
    only the extras are checked here: one pass over ~50 rather than ~100 a user.
    `seen` as a set where the caller has one (see covisitation.top_unseen)."""
    if not extra.items:
        return Scored(list(found.items), list(found.scores))
    excluded = seen if isinstance(seen, set | frozenset) else set(seen)
    # The events path always checks availability, but only items with rules of their own
    # can fail that check: the rest skip `allows` (most of a merge's cost, 50 calls a user).
    filtered = constraints.categories is not None or constraints.created_after is not None
    dated = constraints.available_at is not None
    taken = {item.item_id for item in found.items}
    out = Scored(list(found.items), list(found.scores))
    items, scores = out.items, out.scores
    for item, score in zip(extra.items, extra.scores, strict=True):
        item_id = item.item_id
        if item_id in excluded or item_id in taken:
            continue
        checked = filtered or (dated and item.rules is not DEFAULT_RULES)
        if checked and not constraints.allows(item):
            continue
        taken.add(item_id)
        items.append(item)
        scores.append(score)
    return out


def catalogue_items(ids: Iterable[str], fetched: Mapping[str, ScoredItem]) -> list[ScoredItem]:
    """The ids (trending, co-visited) that exist in the catalogue, in the given order, as
    fetched (payload and vector)."""
    return [fetched[item_id] for item_id in ids if item_id in fetched]
