"""Where candidates are filtered: the Qdrant request per user and the final safety filter.

Pure functions; the one batched store call lives in `recommend.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.store import ScoredItem, SearchRequest


def search_request(
    vector: np.ndarray,
    seen: Sequence[str],
    *,
    k: int,
    categories: Sequence[str] | None = None,
    created_after: float | None = None,
) -> SearchRequest:
    """Ask the store for k items nearest the user, excluding everything already seen."""
    return SearchRequest(
        vector=vector,
        limit=k,
        exclude_item_ids=tuple(seen),
        categories=categories,
        created_after=created_after,
    )


def final_candidates(found: Sequence[ScoredItem], seen: Sequence[str], k: int) -> list[ScoredItem]:
    """Drop seen items and duplicates (defence in depth), best first, at most k."""
    excluded = set(seen)
    out: list[ScoredItem] = []
    for item in sorted(found, key=lambda s: s.score, reverse=True):
        if item.item_id in excluded:
            continue
        excluded.add(item.item_id)
        out.append(item)
        if len(out) == k:
            break
    return out
