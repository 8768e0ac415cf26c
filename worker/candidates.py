"""Where candidates are gathered and filtered: the Qdrant request per user, trending items
scored against the user, and the merge that enforces exclusions and constraints.

Pure functions; the one batched store call lives in `recommend.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.events import UserEvent
from worker.settings import Settings
from worker.store import ScoredItem, SearchRequest


@dataclass(frozen=True, slots=True)
class CandidateFilter:
    categories: tuple[str, ...] | None = None  # None: any category
    created_after: float | None = None  # None: any age

    def allows(self, item: ScoredItem) -> bool:
        if self.categories is not None and item.category not in self.categories:
            return False
        return self.created_after is None or item.created_at >= self.created_after


def candidate_filter(
    settings: Settings, events: Sequence[UserEvent], now: float
) -> CandidateFilter:
    """The settings' constraints, narrowed by the latest event's `context` (if any)."""
    latest = max(events, key=lambda e: e.ts) if events else None
    categories = tuple(settings.recommend_categories) if settings.recommend_categories else None
    if latest is not None and latest.categories is not None:
        wanted = latest.categories
        categories = wanted if categories is None else tuple(c for c in wanted if c in categories)
    windows = [settings.freshness_window_s, latest.max_age_s if latest else None]
    window = min((w for w in windows if w is not None), default=None)
    return CandidateFilter(categories, None if window is None else now - window)


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
        with_vectors=True,
    )


def rescored(item: ScoredItem, score: float) -> ScoredItem:
    """A copy with another score. Not dataclasses.replace: that costs ~20 µs against ~1 µs,
    and this runs for every candidate of every user in a batch."""
    return ScoredItem(
        item.item_id, score, item.category, item.tags, item.created_at, item.popularity, item.vector
    )


def scored_against(items: Sequence[ScoredItem], query: np.ndarray | None) -> list[ScoredItem]:
    """Items fetched by id (trending) get the cosine the store would have given them;
    without a query vector (a user with no usable history) it is 0."""
    with_vectors = [i for i, item in enumerate(items) if item.vector is not None]
    scores = np.zeros(len(items))
    if query is not None and with_vectors:
        vectors = np.stack([items[i].vector for i in with_vectors])  # type: ignore[misc]
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        # einsum keeps this small product off BLAS's thread pool (see ranking.mmr).
        scores[with_vectors] = np.einsum("nd,d->n", vectors, query) / norms
    return [rescored(item, float(score)) for item, score in zip(items, scores, strict=True)]


def merge_candidates(
    found: Sequence[ScoredItem],
    extra: Sequence[ScoredItem],
    seen: Iterable[str],
    constraints: CandidateFilter,
) -> list[ScoredItem]:
    """Search hits then extra candidates, without seen items, duplicates or items the
    constraints rule out (the store already applied them to hits: defence in depth)."""
    excluded = set(seen)
    out: list[ScoredItem] = []
    for item in [*found, *extra]:
        if item.item_id in excluded or not constraints.allows(item):
            continue
        excluded.add(item.item_id)
        out.append(item)
    return out


def trending_items(
    trending: Mapping[str, float], fetched: Mapping[str, ScoredItem]
) -> list[ScoredItem]:
    """The trending ids that exist in the catalogue, as fetched (payload and vector)."""
    return [fetched[item_id] for item_id in trending if item_id in fetched]
