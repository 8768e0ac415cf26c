"""Why each recommended item is listed, from what the ranking already has (pure).

Kinds, in this order when several apply:
    pinned              {"kind"}: a business rule pins it to its slot (worker/answer.py)
    similar_to          {"kind", "item_id"}: the item of the user's history (positive
                        feedback only) nearest to it (cosine of the two item vectors)
    also_consumed_with  {"kind", "item_id"}: the user's recent item it is most often
                        consumed together with (co-visitation)
    trending            {"kind"}: among the trending items the ranking blended in
    new                 {"kind"}: created within the freshness half-life
    category_match      {"kind", "category"}: of a category the request asked for, or of the
                        user's most consumed one

Reasons describe, they do not re-score: an item the ranking picked for several reasons
lists each of them. One [listed, history] product per user, the rest dictionary lookups:
no measurable cost next to the ranking (see README, Reasons).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.store import ScoredItem

Reason = dict[str, str]
KINDS = ("pinned", "similar_to", "also_consumed_with", "trending", "new", "category_match")


@dataclass(frozen=True, slots=True)
class UserEvidence:
    """What one user's answer is explained from."""

    liked: Sequence[tuple[str, np.ndarray]]  # (item_id, vector) of positive history items
    recent: Sequence[str]  # the user's recent consumed items (co-visitation's history)
    covisited: Mapping[str, float]  # candidate -> co-visitation score
    categories: tuple[str, ...] | None  # asked for by the request or the event's context


def favourite_category(liked_categories: Sequence[str | None]) -> str | None:
    """The category the user's liked items fall in most often (ties: the latest)."""
    counts = Counter(c for c in liked_categories if c)
    if not counts:
        return None
    best = max(counts.values())
    return next(c for c in reversed(liked_categories) if c and counts[c] == best)


def nearest_liked(
    items: Sequence[ScoredItem], liked: Sequence[tuple[str, np.ndarray]]
) -> list[str | None]:
    """Per listed item, the liked item nearest to it (None: no vector, or nothing liked)."""
    rows = [n for n, item in enumerate(items) if item.vector is not None]
    out: list[str | None] = [None] * len(items)
    own = {item_id for item_id, _ in liked}
    if not rows or not liked:
        return out
    listed = np.stack([items[n].vector for n in rows])  # type: ignore[misc]
    history = np.stack([vector for _, vector in liked])
    listed /= np.maximum(np.linalg.norm(listed, axis=1, keepdims=True), 1e-12)
    history = history / np.maximum(np.linalg.norm(history, axis=1, keepdims=True), 1e-12)
    # einsum keeps this small product off BLAS's thread pool (see ranking.mmr).
    best = np.einsum("nd,md->nm", listed, history).argmax(axis=1).tolist()
    for n, column in zip(rows, best, strict=True):
        if items[n].item_id not in own:
            out[n] = liked[column][0]
    return out


def explain(
    items: Sequence[ScoredItem],
    evidence: UserEvidence,
    *,
    trending: Mapping[str, float],
    partner: Callable[[str, Sequence[str]], str | None],
    now: float,
    new_within_s: float,
    favourite: str | None,
) -> list[list[Reason]]:
    """The reasons of each listed item (see the module docstring); `partner(item, recent)`
    is co-visitation's strongest partner lookup."""
    nearest = nearest_liked(items, evidence.liked)
    out = []
    for item, similar in zip(items, nearest, strict=True):
        why: list[Reason] = []
        if similar is not None:
            why.append({"kind": "similar_to", "item_id": similar})
        if evidence.covisited.get(item.item_id, 0.0) > 0:
            together = partner(item.item_id, evidence.recent)
            if together is not None:
                why.append({"kind": "also_consumed_with", "item_id": together})
        if item.item_id in trending:
            why.append({"kind": "trending"})
        if item.created_at and now - item.created_at <= new_within_s:
            why.append({"kind": "new"})
        wanted = evidence.categories or ((favourite,) if favourite else ())
        if item.category is not None and item.category in wanted:
            why.append({"kind": "category_match", "category": item.category})
        out.append(why)
    return out
