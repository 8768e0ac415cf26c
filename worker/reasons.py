"""Why each recommended item is listed, from what the ranking already has (pure).

Kinds, in this order when several apply:
    pinned              {"kind"}: a business rule pins it to its slot (worker/answer.py)
    similar_to          {"kind", "item_id"}: of the user's last LIKED_FOR_REASONS liked items
                        (positive feedback), the one nearest to it (cosine)
    also_consumed_with  {"kind", "item_id"}: the user's recent item it is most often
                        consumed together with (co-visitation)
    trending            {"kind"}: among the trending items the ranking blended in
    new                 {"kind"}: created within the freshness half-life
    category_match      {"kind", "category"}: of a category the request asked for, or of the
                        user's most liked one

Reasons describe, they do not re-score: an item the ranking picked for several reasons
lists each of them. One [listed, history] product per user, the rest dictionary lookups:
no measurable cost next to the ranking (see README, Reasons).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.store import ScoredItem
from worker.vector_rows import padded

Reason = dict[str, str]
# Liked items an item's `similar_to` is chosen from: the latest ones (what the user
# vector weighs most), and a bounded cost per listed item.
LIKED_FOR_REASONS = 10
KINDS = ("pinned", "similar_to", "also_consumed_with", "trending", "new", "category_match")


@dataclass(frozen=True, slots=True)
class UserEvidence:
    """What one user's answer is explained from."""

    nearest: Sequence[str | None]  # per listed item: the nearest liked item (nearest_liked)
    partners: Mapping[str, str]  # co-visited item -> the recent item it is consumed with most
    categories: tuple[str, ...] | None  # asked for by the request or the event's context


def favourite_category(liked_categories: Sequence[str | None]) -> str | None:
    """The category the user's liked items fall in most often (ties: the latest)."""
    counts: dict[str, int] = {}  # a dict, not a Counter: 2 against 5 µs for 10 items
    for category in liked_categories:
        if category:
            counts[category] = counts.get(category, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(c for c in reversed(liked_categories) if c and counts[c] == best)


def nearest_liked(
    items: Sequence[ScoredItem], liked: Sequence[tuple[str, np.ndarray]]
) -> list[str | None]:
    """Per listed item, the liked item nearest to it (None: no vector, or nothing liked)."""
    return nearest_liked_many([items], [liked])[0]


def nearest_liked_many(
    listed: Sequence[Sequence[ScoredItem]], liked: Sequence[Sequence[tuple[str, np.ndarray]]]
) -> list[list[str | None]]:
    """`nearest_liked` for every user of a batch: one [users, listed, liked] product."""
    out: list[list[str | None]] = [[None] * len(items) for items in listed]
    width = max((len(items) for items in listed), default=0)
    depth = max((len(vectors) for vectors in liked), default=0)
    dim = next((v.shape[0] for vectors in liked for _, v in vectors), 0)
    if not width or not depth:
        return out
    items_at = padded([[i.vector for i in items] for items in listed], width, dim)
    liked_at = padded([[v for _, v in vectors] for vectors in liked], depth, dim)
    # Store vectors are unit length: the dot product is the cosine. einsum keeps this small
    # product off BLAS's thread pool (see ranking.mmr).
    cosines = np.einsum("bnd,bmd->bnm", items_at, liked_at)
    counts = np.array([len(vectors) for vectors in liked])
    padding = np.arange(depth)[None, :] >= counts[:, None]  # [users, liked]
    cosines = np.where(padding[:, None, :], -np.inf, cosines)
    best = cosines.argmax(axis=2).tolist()
    for row, (items, vectors) in enumerate(zip(listed, liked, strict=True)):
        own = {item_id for item_id, _ in vectors}
        for col, item in enumerate(items):
            if vectors and item.vector is not None and item.item_id not in own:
                out[row][col] = vectors[best[row][col]][0]
    return out


def explain(
    items: Sequence[ScoredItem],
    evidence: UserEvidence,
    *,
    trending: Mapping[str, float],
    now: float,
    new_within_s: float,
    favourite: str | None,
) -> list[list[Reason]]:
    """The reasons of each listed item (see the module docstring)."""
    out = []
    wanted = evidence.categories or ((favourite,) if favourite else ())
    for item, similar in zip(items, evidence.nearest, strict=True):
        why: list[Reason] = []
        if similar is not None:
            why.append({"kind": "similar_to", "item_id": similar})
        together = evidence.partners.get(item.item_id)
        if together is not None:
            why.append({"kind": "also_consumed_with", "item_id": together})
        if item.item_id in trending:
            why.append({"kind": "trending"})
        if item.created_at and now - item.created_at <= new_within_s:
            why.append({"kind": "new"})
        if item.category is not None and item.category in wanted:
            why.append({"kind": "category_match", "category": item.category})
        out.append(why)
    return out
